"""bridge: the instrument bus. Rigs (real or emulated) served over ZeroMQ, wire protocol v1.

Public names (``__all__``), by module:

- ``bridge.rig``: :class:`Rig`, :class:`DriveResult`, :func:`check_inputs` (the one range
  check) and :func:`check_seed` (the one seed check): the contract every device implements.
- ``bridge.server``: :class:`RigServer` serves rigs; ``bridge.client``: :class:`RigClient` drives
  them (``bridge/PROTOCOL.md``; ``bridge.protocol``: the one decode/encode path and constants).
- ``bridge.station``: :func:`load_station` / :func:`serve` / :func:`check_station`: rigs from a
  TOML station file, validated by pydantic models.
- ``bridge.errors``: ``BridgeError`` and its subclasses; ``bridge.values``: scalar checks of
  configuration values (``as_float``, ``as_int``, ``as_seed``, ``positive``).
- ``bridge.auth``: CurveZMQ keys and the plain-transport policy (station ``[security]``);
  ``bridge.lease``: the lease table (``lock``/``unlock``); ``bridge.limits``: safety interlocks;
  ``bridge.pool``: one rig kind on several servers; ``bridge.fuzz``: a standalone fuzz run
  (``python -m bridge.fuzz --seconds 60``).
- ``bridge.backends``: the rigs bridge ships (test rigs, replay, the NI-DAQ NRA rig).

Private modules start with ``_`` (``_worker``: a rig's worker thread; ``_cache``: the reply
cache). bridge imports neither ``nado`` nor ``emulator``; backends are found through the
``bridge.backends`` entry-point group.
"""
from . import errors
from .client import RigClient
from .errors import (BadInput, BridgeError, OutOfRange, ProtocolError, RigError, RigTimeout,
                     RigUnavailable, StationError)
from .rig import DriveResult, Rig, check_inputs, check_seed
from .server import RigServer
from .station import check_station, load_station, serve

__all__ = ["Rig", "DriveResult", "check_inputs", "check_seed", "RigServer", "RigClient", "load_station",
           "serve", "check_station", "errors", "BridgeError", "RigError", "BadInput", "OutOfRange",
           "ProtocolError", "RigTimeout", "RigUnavailable", "StationError"]
