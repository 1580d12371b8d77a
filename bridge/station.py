"""Station files: which rigs a server serves, and with which backends.

A station is a TOML file::

    [rigs.nra]
    backend = "physics.nra"          # an entry point of group "bridge.backends"
    seed = 1                         # every other key goes to the backend
    limits = { max_field_oe = 80.0 } # reserved: passed to bridge.limits.guard

    [rigs.mine]
    backend = "python:mypkg.driver:MyRig"   # a user's own class

Each ``[rigs.NAME]`` table becomes ``Backend(name=NAME, **params)``, wrapped by
``bridge.limits.guard(rig, limits)``. bridge reserves the keys ``backend`` and
``limits``. Top-level tables other than ``rigs`` are kept for the server
(``server``, ``security``) or name pools (``pools``); anything else is refused:

- ``[security]``: CurveZMQ keys and the plain-transport policy (:mod:`bridge.auth`);
- ``[server]``: ``RigServer`` settings ``queue_size``, ``cache_size``,
  ``cache_age_s``, ``cache_bytes``, ``max_message_bytes``, ``max_lease_s``,
  ``heartbeat_s`` (see :func:`server_options`);
- ``[pools.NAME]``: a pool of rigs of one kind on several servers, for clients
  (``members = [{endpoint = "tcp://...", rig = "nra"}, ...]``, optional ``timeout_s``,
  ``retries``, ``chunk``, ``down_s``), checked by :func:`bridge.pool.parse_pools` and
  kept in :attr:`Station.pools` (``{NAME: RigPool keyword arguments}``); build one with
  :func:`bridge.pool.load_pool`. A server ignores pools. A station may hold only pools
  (a client-side file); serving such a station is refused.

Without a file the
built-in station serves the emulated ``nra`` (``physics.nra``) and ``asvi``
(``physics.asvi``) rigs.

Backends are found through ``importlib.metadata.entry_points(group="bridge.backends")``
(the ``nado`` distribution registers ``echo``, ``leaky``, ``replay``,
``nidaqmx.nra``, ``physics.nra``, ``physics.asvi``, ``sde``, ``ophyd``) or as
``python:package.module:Class``. Every problem raises :class:`StationError`
naming the rig and the key.
"""
from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import BridgeError, StationError

ENTRY_POINT_GROUP = "bridge.backends"
RESERVED = ("backend", "limits")
TOP_LEVEL = ("rigs", "server", "security", "pools")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class RigSpec:
    """One ``[rigs.NAME]`` table: backend name, constructor params, limits (or None)."""

    name: str
    backend: str
    params: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] | None = None


@dataclass(frozen=True)
class Station:
    """A parsed station: ``rigs`` in file order; ``settings`` = the other top-level tables;
    ``pools`` = ``{NAME: RigPool keyword arguments}`` from ``[pools.NAME]`` tables."""

    path: str | None
    rigs: tuple[RigSpec, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)


BUILTIN = Station(path=None, rigs=(RigSpec("nra", "physics.nra"), RigSpec("asvi", "physics.asvi")))


def load_station(path: str | Path | None) -> Station:
    """Parse and check a station file; ``None`` gives the built-in station (nra, asvi)."""
    if path is None:
        return BUILTIN
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StationError(f"station file {p} not found; give an existing file, or none for the "
                           "built-in station (emulated nra and asvi)") from None
    except tomllib.TOMLDecodeError as exc:
        raise StationError(f"station file {p} is not valid TOML: {exc}") from None
    return parse_station(data, str(p))


def parse_station(data: dict[str, Any], path: str | None = None) -> Station:
    """A :class:`Station` from an already-parsed TOML mapping."""
    where = path or "station"
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise StationError(f"{where}: unknown top-level key(s) {unknown}; a station has {list(TOP_LEVEL)}")
    from .pool_config import parse_pools
    try:
        pools = parse_pools(data)
    except StationError as exc:
        raise StationError(f"{where}: {exc}") from None
    rigs = data.get("rigs", {} if pools else None)
    if not isinstance(rigs, dict) or (not rigs and not pools):
        raise StationError(f"{where}: no rigs; add at least one table like [rigs.nra] backend = \"physics.nra\"")
    specs = []
    for name, table in rigs.items():
        if not _NAME_RE.match(name):
            raise StationError(f"{where}: rig name {name!r} must be 1..64 of letters, digits, '_', '.', '-'")
        if not isinstance(table, dict):
            raise StationError(f"{where}: rigs.{name} must be a table with a 'backend' key")
        backend = table.get("backend")
        if not isinstance(backend, str) or not backend:
            raise StationError(f"{where}: rigs.{name}.backend is missing or not a string; "
                               f"known backends: {known_backends()} or 'python:pkg.mod:Class'")
        limits = table.get("limits")
        if limits is not None and not isinstance(limits, dict):
            raise StationError(f"{where}: rigs.{name}.limits must be a table, e.g. limits = {{ max_field_oe = 80.0 }}")
        params = {k: v for k, v in table.items() if k not in RESERVED}
        if "name" in params:
            raise StationError(f"{where}: rigs.{name}.name is implied by the table name; remove the key")
        specs.append(RigSpec(name, backend, params, limits))
    settings = {k: v for k, v in data.items() if k not in ("rigs", "pools")}
    return Station(path=path, rigs=tuple(specs), settings=settings, pools=pools)


def known_backends() -> list[str]:
    """Names registered in the ``bridge.backends`` entry-point group."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def resolve_backend(backend: str, rig: str = "?") -> type:
    """The class named by ``backend`` (entry-point name or ``python:pkg.mod:Class``)."""
    if backend.startswith("python:"):
        target = backend[len("python:"):]
        mod_name, _, attr = target.partition(":")
        if not mod_name or not attr:
            raise StationError(f"rigs.{rig}.backend = {backend!r}: write python:package.module:Class")
        try:
            module = importlib.import_module(mod_name)
        except Exception as exc:
            raise StationError(f"rigs.{rig}.backend = {backend!r}: cannot import {mod_name} "
                               f"({type(exc).__name__}: {exc}); is it installed or on PYTHONPATH?") from None
        try:
            obj = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise StationError(f"rigs.{rig}.backend = {backend!r}: {mod_name} has no {attr}") from None
        return obj
    eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == backend]
    if not eps:
        raise StationError(f"rigs.{rig}.backend = {backend!r} is unknown; known backends: "
                           f"{known_backends()}, or 'python:package.module:Class' for your own driver")
    try:
        return eps[0].load()
    except Exception as exc:
        raise StationError(f"rigs.{rig}.backend = {backend!r} ({eps[0].value}) cannot be imported: "
                           f"{type(exc).__name__}: {exc}") from None


def rig_names(station: Station) -> list[str]:
    return [s.name for s in station.rigs]


def build_rig(station: Station, name: str) -> Any:
    """Construct rig ``name``: ``Backend(name=name, **params)`` guarded by its limits."""
    spec = next((s for s in station.rigs if s.name == name), None)
    if spec is None:
        raise StationError(f"the station has no rig {name!r}; it has {rig_names(station)}")
    cls = resolve_backend(spec.backend, spec.name)
    if not callable(cls):
        raise StationError(f"rigs.{name}.backend = {spec.backend!r} is not a class")
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(name=spec.name, **spec.params)
        except TypeError as exc:
            accepted = [p for p in sig.parameters if p not in ("self", "name")
                        and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                           inspect.Parameter.VAR_KEYWORD)]
            raise StationError(f"rigs.{name}: bad parameters for backend {spec.backend!r} ({exc}); "
                               f"it accepts {accepted} (plus the reserved 'backend' and 'limits')") from None
    try:
        rig = cls(name=spec.name, **spec.params)
    except BridgeError:
        raise
    except Exception as exc:
        raise StationError(f"rigs.{name}: backend {spec.backend!r} refused its parameters: "
                           f"{type(exc).__name__}: {exc}") from None
    from .limits import guard
    try:
        return guard(rig, spec.limits)
    except BaseException:
        _close(rig)
        raise


def build_rigs(station: Station) -> dict[str, Any]:
    """Every rig of the station, by name (rigs already built are closed if one fails)."""
    rigs: dict[str, Any] = {}
    try:
        for name in rig_names(station):
            rigs[name] = build_rig(station, name)
    except BaseException:
        for rig in rigs.values():
            _close(rig)
        raise
    return rigs


def _close(rig: Any) -> None:
    fn = getattr(rig, "close", None)
    if callable(fn):
        try:
            fn()
        except Exception:
            pass


SERVER_KEYS = {"queue_size": int, "cache_size": int, "cache_age_s": float, "cache_bytes": int,
               "max_message_bytes": int, "max_lease_s": float, "heartbeat_s": float}


def server_options(station: Station) -> dict[str, Any]:
    """``RigServer`` keyword arguments from the station's ``[server]`` and ``[security]`` tables."""
    from .auth import Security
    where = station.path or "station"
    table = station.settings.get("server") or {}
    if not isinstance(table, dict):
        raise StationError(f"{where}: [server] must be a table of {sorted(SERVER_KEYS)}")
    opts: dict[str, Any] = {}
    for key, value in table.items():
        kind = SERVER_KEYS.get(key)
        if kind is None:
            raise StationError(f"{where}: [server] has unknown key {key!r}; it takes {sorted(SERVER_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                or (kind is int and not isinstance(value, int)):
            raise StationError(f"{where}: [server] {key} must be a non-negative {kind.__name__}, got {value!r}")
        opts[key] = kind(value)
    base = Path(station.path).parent if station.path else None
    opts["security"] = Security.from_settings(station.settings, base)
    return opts


def serve(path_or_station: str | Path | Station | None, bind: str | list[str], **server_kw: Any):
    """Build the station's rigs and return a started :class:`bridge.server.RigServer`."""
    from .server import RigServer
    station = (path_or_station if isinstance(path_or_station, Station)
               else load_station(path_or_station))
    if not station.rigs:
        raise StationError(f"{station.path or 'station'}: it lists only pools ({sorted(station.pools)}), "
                           "no rigs to serve; serve the members' own stations, or add [rigs.NAME] tables")
    server_kw = {**server_options(station), **server_kw}
    rigs = build_rigs(station)
    try:
        server = RigServer(rigs, bind, **server_kw)
    except BaseException:
        for rig in rigs.values():
            _close(rig)
        raise
    return server.start()
