"""Errors of the instrument bus.

One base class, :class:`BridgeError`; each specific error also subclasses the
matching builtin so callers can catch what they already know (``ValueError``,
``TimeoutError``, ``ConnectionError``). Messages say what to do next.
"""
from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error raised by :mod:`bridge`."""


class RigError(BridgeError):
    """A request was answered with an error code (see ``bridge.protocol``).

    Attributes: ``code`` (str, one of ``bridge.protocol.CODES``) and ``message``.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadInput(RigError, ValueError):
    """Inputs of the wrong shape or dtype, NaN or inf (code ``BAD_INPUT``)."""

    def __init__(self, message: str):
        super().__init__("BAD_INPUT", message)


class OutOfRange(RigError, ValueError):
    """Inputs outside the rig's safe range (code ``OUT_OF_RANGE``)."""

    def __init__(self, message: str):
        super().__init__("OUT_OF_RANGE", message)


class ProtocolError(RigError, ValueError):
    """A message breaks wire protocol v1 (``bridge/PROTOCOL.md``).

    ``code`` is the error code a server answers with (usually ``BAD_REQUEST``).
    """


class RigTimeout(BridgeError, TimeoutError):
    """No reply within the client's timeout after every retry."""


class RigUnavailable(BridgeError, ConnectionError):
    """The server cannot be reached, or does not serve the named rig."""


class StationError(BridgeError, ValueError):
    """A station file (or a backend's configuration) is invalid."""
