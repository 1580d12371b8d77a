"""Errors of the emulated rigs.

:class:`EmulatorError` is the base; each specific error also subclasses the
matching builtin (``ValueError``), so callers catch what they already know.
Configuration errors are also :class:`bridge.errors.StationError`, because an
emulated rig's parameters come from a station table.
"""
from __future__ import annotations

from bridge.errors import StationError


class EmulatorError(Exception):
    """Base class of every error raised by :mod:`emulator`."""


class NoiseParamError(EmulatorError, ValueError):
    """A noise source got an invalid parameter (negative tau or sigma, NaN, ...)."""


class ConfigError(EmulatorError, StationError):
    """An emulated rig got an invalid configuration parameter (named in the message)."""
