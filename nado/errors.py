"""Errors of the trainer. One base class; specific ones subclass the matching builtin."""
from __future__ import annotations

from bridge.errors import StationError


class NadoError(Exception):
    """Base class of every error raised by :mod:`nado`."""


class ConfigError(NadoError, ValueError):
    """A scenario or command-line setting is invalid; the message names the key."""


class DatasetError(NadoError, ValueError):
    """A dataset file is missing, unfinished, corrupt or of the wrong layout."""


class CheckpointError(NadoError, ValueError):
    """A twin checkpoint has the wrong version or shapes."""


class RigConfigError(ConfigError, StationError):
    """A rig that nado serves (a twin as a rig) got an invalid station parameter (named in the message)."""
