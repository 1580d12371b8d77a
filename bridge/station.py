"""Station files: which rigs a server serves, and with which backends.

A station is a TOML file::

    [rigs.nra]
    backend = "physics.nra"          # an entry point of group "bridge.backends"
    seed = 1                         # every other key goes to the backend
    limits = { max_field_oe = 80.0 } # reserved: passed to bridge.limits.guard

    [rigs.mine]
    backend = "python:mypkg.driver:MyRig"   # a user's own class

The file is validated by pydantic models (:class:`StationFile`, :class:`RigTable`,
:class:`ServerTable`); their first error becomes one :class:`StationError` line naming the key
(``rigs.NAME.backend``, ``[server] queue_size``). Each ``[rigs.NAME]`` table becomes ``Backend(name=NAME, **params)``, wrapped by
``bridge.limits.guard(rig, limits)``. bridge reserves the keys ``backend``,
``limits`` and ``max_drive_elements`` (this rig's bound on input elements per drive,
overriding ``[server] max_drive_elements``). Top-level tables other than ``rigs`` are kept for the server
(``server``, ``security``) or name pools (``pools``); anything else is refused:

- ``[security]``: CurveZMQ keys and the plain-transport policy (:mod:`bridge.auth`);
- ``[server]``: ``RigServer`` settings ``queue_size``, ``cache_size``,
  ``cache_age_s``, ``cache_bytes``, ``max_message_bytes``, ``max_lease_s``,
  ``heartbeat_s``, ``max_drive_elements``, ``peer_queue``, ``peer_replies``, ``shutdown_s``
  (see :func:`server_options` and ``bridge/PROTOCOL.md``, "Limits");
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

import inspect
import re
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BridgeError, StationError
from .limits import describe_rig_line, guard
from .values import import_object

ENTRY_POINT_GROUP = "bridge.backends"
RESERVED = ("backend", "limits", "max_drive_elements")
TOP_LEVEL = ("rigs", "server", "security", "pools")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class RigSpec:
    """One ``[rigs.NAME]`` table: backend name, constructor params, limits (or None)."""

    name: str
    backend: str
    params: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] | None = None
    max_drive_elements: int | None = None   # this rig's bound on input elements per drive


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RigTable(BaseModel):
    """One ``[rigs.NAME]`` table: ``backend`` (required), the reserved ``limits`` and
    ``max_drive_elements``; every other key is a backend parameter."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    backend: str = Field(min_length=1)
    limits: dict[str, Any] | None = None
    max_drive_elements: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _no_name(self) -> "RigTable":
        if "name" in (self.model_extra or {}):
            raise ValueError("name_key")
        return self


class ServerTable(_Strict):
    """``[server]``: :class:`bridge.server.RigServer` settings (counts >= 0, seconds >= 0)."""

    queue_size: int | None = Field(default=None, ge=0)
    cache_size: int | None = Field(default=None, ge=0)
    cache_age_s: float | None = Field(default=None, ge=0)
    cache_bytes: int | None = Field(default=None, ge=0)
    max_message_bytes: int | None = Field(default=None, ge=0)
    max_lease_s: float | None = Field(default=None, ge=0)
    heartbeat_s: float | None = Field(default=None, ge=0)
    max_drive_elements: int | None = Field(default=None, ge=1)
    peer_queue: int | None = Field(default=None, ge=1)
    peer_replies: int | None = Field(default=None, ge=1)
    shutdown_s: float | None = Field(default=None, ge=0)

    @field_validator("cache_age_s", "max_lease_s", "heartbeat_s", "shutdown_s", mode="before")
    @classmethod
    def _int_is_float(cls, v: Any) -> Any:   # TOML writes 5 for 5.0 seconds
        return float(v) if type(v) is int else v


class StationFile(_Strict):
    """A station file's top level. ``[server]`` is checked (:class:`ServerTable`) when a server is
    made from it (:func:`server_options`), ``[security]`` by :mod:`bridge.auth`, ``[pools]`` by
    :mod:`bridge.pool_config`: a client-side file may carry settings only its server reads."""

    rigs: dict[str, RigTable] | None = None
    server: Any = None
    security: Any = None
    pools: Any = None


def _station_error(where: str, data: dict[str, Any], err: ValidationError) -> StationError:
    """One line naming the key (``rigs.NAME.key``, ``[server] key``) for pydantic's first error."""
    e = err.errors()[0]
    loc, kind = tuple(e["loc"]), e["type"]
    value = e.get("input")
    if len(loc) == 1 and kind == "extra_forbidden":
        unknown = sorted(set(data) - set(TOP_LEVEL))
        return StationError(f"{where}: unknown top-level key(s) {unknown}; a station has {list(TOP_LEVEL)}")
    if loc[:1] == ("rigs",):
        if len(loc) == 1:
            return StationError(f"{where}: no rigs; add at least one table like [rigs.nra] backend = \"physics.nra\"")
        name = loc[1]
        key = loc[2] if len(loc) > 2 else None
        if key is None and "name_key" in str(e.get("msg")):
            return StationError(f"{where}: rigs.{name}.name is implied by the table name; remove the key")
        if key is None:
            return StationError(f"{where}: rigs.{name} must be a table with a 'backend' key")
        if key == "backend":
            return StationError(f"{where}: rigs.{name}.backend is missing or not a string; "
                                f"known backends: {known_backends()} or 'python:pkg.mod:Class'")
        if key == "limits":
            return StationError(f"{where}: rigs.{name}.limits must be a table, e.g. limits = {{ max_field_oe = 80.0 }}")
        if key == "max_drive_elements":
            return StationError(f"{where}: rigs.{name}.max_drive_elements must be an int >= 1 (input "
                                f"elements B * T * n_in per drive), got {value!r}")
        return StationError(f"{where}: rigs.{name}.{key}: {e['msg']}")
    if loc[:1] == ("server",):
        keys = sorted(ServerTable.model_fields)
        if len(loc) == 1:
            return StationError(f"{where}: [server] must be a table of {keys}")
        if kind == "extra_forbidden":
            return StationError(f"{where}: [server] has unknown key {loc[1]!r}; it takes {keys}")
        ann = ServerTable.model_fields[loc[1]].annotation
        unit = "int" if "int" in str(ann) else "float"
        low = ServerTable.model_fields[loc[1]].metadata[0].ge
        return StationError(f"{where}: [server] {loc[1]} must be {'a non-negative' if low == 0 else 'a positive'} "
                            f"{unit}, got {value!r}")
    return StationError(f"{where}: {'.'.join(map(str, loc))}: {e['msg']}")


def parse_station(data: dict[str, Any], path: str | None = None) -> Station:
    """A :class:`Station` from an already-parsed TOML mapping (validated by :class:`StationFile`)."""
    where = path or "station"
    try:
        model = StationFile.model_validate(data)
    except ValidationError as exc:
        raise _station_error(where, data, exc) from None
    from .pool_config import parse_pools
    try:
        pools = parse_pools(data)
    except StationError as exc:
        raise StationError(f"{where}: {exc}") from None
    rigs = model.rigs if model.rigs is not None else ({} if pools else None)
    if rigs is None or (not rigs and not pools):
        raise StationError(f"{where}: no rigs; add at least one table like [rigs.nra] backend = \"physics.nra\"")
    specs = []
    for name, table in rigs.items():
        if not _NAME_RE.match(name):
            raise StationError(f"{where}: rig name {name!r} must be 1..64 of letters, digits, '_', '.', '-'")
        specs.append(RigSpec(name, table.backend, dict(table.model_extra or {}), table.limits,
                             table.max_drive_elements))
    settings = {k: v for k, v in data.items() if k not in ("rigs", "pools")}
    return Station(path=path, rigs=tuple(specs), settings=settings, pools=pools)


def known_backends() -> list[str]:
    """Names registered in the ``bridge.backends`` entry-point group."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def resolve_backend(backend: str, rig: str = "?") -> type:
    """The class named by ``backend`` (entry-point name or ``python:pkg.mod:Class``)."""
    if backend.startswith("python:"):
        return import_object(f"rigs.{rig}.backend", backend[len("python:"):], form="python:package.module:Class")
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


def server_options(station: Station) -> dict[str, Any]:
    """``RigServer`` keyword arguments from the station's ``[server]`` and ``[security]`` tables."""
    from .auth import Security
    where = station.path or "station"
    try:
        table = ServerTable.model_validate(station.settings.get("server") or {})
    except ValidationError as exc:
        raise _station_error(where, {"server": station.settings.get("server")}, _server_loc(exc)) from None
    opts: dict[str, Any] = table.model_dump(exclude_none=True)
    base = Path(station.path).parent if station.path else None
    opts["security"] = Security.from_settings(station.settings, base)
    per_rig = {s.name: s.max_drive_elements for s in station.rigs if s.max_drive_elements is not None}
    if per_rig:
        opts["rig_max_drive_elements"] = per_rig
    return opts


def _server_loc(exc: ValidationError) -> ValidationError:
    """``exc`` (raised by :class:`ServerTable` alone) with its locations under ``server``."""
    errors = [{**e, "loc": ("server", *e["loc"])} for e in exc.errors()]
    for e in errors:
        e.pop("url", None)
        if e["type"] in ("value_error", "assertion_error"):
            e.setdefault("ctx", {"error": e["msg"]})
    return ValidationError.from_exception_data("ServerTable", errors)


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


def check_station(path: str | None) -> str:
    """Validate a station file without driving: build each rig (guarded), report, close.

    Returns the printable report. Raises :class:`StationError` whose message is
    the whole report when any rig fails to build (bad parameters, missing
    limits, missing driver), so a CLI prints it and exits non-zero.
    """
    station = load_station(path)
    lines = [f"station {path or '(built-in)'}:"]
    failed = 0
    for name in rig_names(station):
        try:
            rig = build_rig(station, name)
        except (BridgeError, ValueError, TypeError, ImportError) as exc:
            failed += 1
            lines.append(f"  {name}: ERROR {exc}")
            continue
        try:
            lines.append(describe_rig_line(name, rig.describe()))
        finally:
            close = getattr(rig, "close", None)
            if close is not None:
                close()
    n = len(rig_names(station))
    lines.append(f"{n} rig(s) checked, {failed} failed (nothing was driven)" if failed
                 else f"{n} rig(s) valid (nothing was driven)")
    report = "\n".join(lines)
    if failed:
        raise StationError(report)
    return report
