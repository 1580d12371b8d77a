"""``python -m nado.cli ...``: the ``nado`` command."""
import sys

from . import main

sys.exit(main())
