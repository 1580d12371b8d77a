"""nado: noise-aware dynamic optimisation of networks of physical devices.

The packages follow the pipeline (collect -> twins -> networks -> transfer / cascade -> report):
:mod:`nado.data`, :mod:`nado.twin`, :mod:`nado.network`, :mod:`nado.tasks`,
:mod:`nado.pipeline` (a scenario end to end, sweeps), :mod:`nado.cli` (the ``nado`` command),
:mod:`nado.bench`; :mod:`nado.errors` and :mod:`nado.io` serve them all. The trainer reaches
devices only through :mod:`bridge` (never :mod:`emulator`).
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
