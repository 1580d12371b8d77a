"""``python -m nado.cli ...``: the ``nado`` command."""
from . import console

console()
