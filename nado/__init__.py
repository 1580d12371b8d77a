"""nado: noise-aware dynamic optimisation of networks of physical devices.

The trainer reaches devices only through :mod:`bridge` (never :mod:`emulator`).
"""
__version__ = "0.1.0"
