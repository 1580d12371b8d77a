"""bridge: the instrument bus. Rigs (real or emulated) served over ZeroMQ, wire protocol v1.

- :class:`Rig`, :class:`DriveResult` (``bridge.rig``): the interface every device implements.
- :class:`RigServer` serves rigs; :class:`RigClient` drives them (``bridge/PROTOCOL.md``).
- :func:`load_station` / :func:`serve` (``bridge.station``): rigs from a TOML station file.
- :mod:`bridge.errors`: ``BridgeError`` and its subclasses.
- :mod:`bridge.auth`: CurveZMQ keys and the plain-transport policy (station ``[security]``);
  :mod:`bridge.lease`: exclusive access (``lock``/``unlock``/``status``);
  :mod:`bridge.fuzz`: a standalone fuzz run (``python -m bridge.fuzz --seconds 60``).

bridge imports neither ``nado`` nor ``emulator``; backends are found through the
``bridge.backends`` entry-point group.
"""
from . import errors
from .client import RigClient
from .errors import (BadInput, BridgeError, OutOfRange, ProtocolError, RigError, RigTimeout,
                     RigUnavailable, StationError)
from .rig import DriveResult, Rig, check_inputs
from .server import RigServer
from .station import load_station, serve

__all__ = ["Rig", "DriveResult", "check_inputs", "RigServer", "RigClient", "load_station", "serve",
           "errors", "BridgeError", "RigError", "BadInput", "OutOfRange", "ProtocolError",
           "RigTimeout", "RigUnavailable", "StationError"]
