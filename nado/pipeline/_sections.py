"""The sections of a scenario file: frozen dataclasses, value checks and section parsers.

Every parser takes one TOML table and returns its dataclass, or raises
:class:`nado.errors.ConfigError` whose message starts with ``section.key:`` and says
what is wrong. :mod:`nado.pipeline.scenario` assembles them (see its docstring for the format).
"""
from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError

TASK_KINDS = ("digits", "mnist", "mnist5k", "mackey_glass", "emg")
CLASSIFICATION_VARIANTS = ("sde", "ode", "rc", "rc1", "mlp", "leaky", "pat", "pat_finetune", "refine",
                           "refine_uniform")
REGRESSION_VARIANTS = ("direct", "cascade", "sde", "ode", "pat_finetune")
TWIN_ARCH_KEYS = ("n_delay", "n_aux", "width", "depth", "method", "substeps", "tau0", "tau_ratio")
NETWORK_KEYS = ("layers", "nodes", "pi", "bias", "init_gain")
TASK_KEYS = {
    "digits": ("visibility", "n_train", "n_test", "maskings", "test_fraction", "data_dir"),
    "mackey_glass": ("n_samples", "washout", "n_train", "sections", "section_length", "horizons",
                     "sample_dt", "dt_fine", "input_window"),
    "emg": ("data_dir", "subjects", "synthetic", "window", "cutoff_hz"),
}
SECTIONS = ("run", "station", "rigs", "collect", "twins", "task", "network", "train", "variants",
            "pools", "budget")


def _task_family(kind: str) -> str:
    return "digits" if kind in ("digits", "mnist", "mnist5k") else kind


@dataclass(frozen=True)
class RunSection:
    name: str = "run"
    seed: int = 0
    out: str = "runs"
    cache: str = ".nado-cache"


@dataclass(frozen=True)
class StationSection:
    path: str = "builtin"
    endpoint: str | None = None
    bind: str = "ipc"
    timeout_s: float = 60.0


@dataclass(frozen=True)
class CollectSection:
    sequences: int = 2000
    length: int = 20
    repeats: tuple[int, int] = (100, 50)
    resets: int = 500
    batch: int = 500
    mode: str = "sequences"
    reset_prob: float = 0.02
    holds: int = 0        # extra dynamics sequences of held / extreme inputs (nado.data.supplement)
    hold_max: int = 8     # longest hold, steps
    active_range: dict = field(default_factory=dict)  # kind -> (lo, hi)
    per_kind: dict = field(default_factory=dict)      # kind -> {key: value}

    def for_kind(self, kind: str) -> dict[str, Any]:
        """The collect keyword arguments for one device kind."""
        base = {k: getattr(self, k) for k in ("sequences", "length", "repeats", "resets", "batch",
                                              "mode", "reset_prob")}
        base.update({k: v for k, v in self.per_kind.get(kind, {}).items() if k in base})
        base["repeats"] = tuple(int(v) for v in base["repeats"])
        ar = self.active_range.get(kind)
        base["active_range"] = None if ar is None else tuple(float(v) for v in ar)
        return base

    def holds_for(self, kind: str) -> dict[str, int]:
        """``{holds, hold_max, length, batch}`` of the structured supplement for one kind."""
        own = self.per_kind.get(kind, {})
        return {k: int(own.get(k, getattr(self, k))) for k in ("holds", "hold_max", "length", "batch")}


@dataclass(frozen=True)
class TwinsSection:
    arch: dict = field(default_factory=dict)       # TwinConfig overrides for every kind
    per_kind: dict = field(default_factory=dict)   # kind -> TwinConfig overrides
    ode: dict = field(default_factory=dict)        # fit_ode keyword arguments
    sde: dict = field(default_factory=dict)        # fit_sde keyword arguments

    def arch_for(self, kind: str) -> dict[str, Any]:
        return {**self.arch, **self.per_kind.get(kind, {})}


@dataclass(frozen=True)
class TaskSection:
    kind: str
    params: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return _task_family(self.kind)

    @property
    def classification(self) -> bool:
        return self.family != "mackey_glass"


@dataclass(frozen=True)
class NetworkSection:
    layers: tuple[str, ...]
    params: dict = field(default_factory=dict)  # nodes, pi, bias, init_gain (TrainConfig keys)


@dataclass(frozen=True)
class VariantsSection:
    names: tuple[str, ...]
    depths: tuple[int, ...] = (2, 3)
    pat: Any = None         # [variants.pat]: nado.network.pat.PatOptions keys
    refine: Any = None      # [variants.refine]: nado.network.refine.RefineOptions keys


# ------------------------------------------------------------------ validation helpers
def _err(key: str, why: str) -> ConfigError:
    return ConfigError(f"{key}: {why}")


def _check_keys(table: dict, allowed, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _err(f"{where}.{unknown[0]}", f"unknown key; {where} takes {', '.join(sorted(allowed))}")


def _table(raw: dict, name: str) -> dict:
    v = raw.get(name, {})
    if not isinstance(v, dict):
        raise _err(name, f"must be a table ([{name}]), got {type(v).__name__}")
    return v


def _int(v: Any, key: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(key, f"must be an integer, got {v!r}")
    if lo is not None and v < lo:
        raise _err(key, f"must be >= {lo}, got {v}")
    return v


def _float(v: Any, key: str, lo: float | None = None, hi: float | None = None,
           strict_lo: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(key, f"must be a finite number, got {v!r}")
    if lo is not None and (v <= lo if strict_lo else v < lo):
        raise _err(key, f"must be {'>' if strict_lo else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise _err(key, f"must be <= {hi}, got {v}")
    return float(v)


def _str(v: Any, key: str, choices=None) -> str:
    if not isinstance(v, str):
        raise _err(key, f"must be a string, got {v!r}")
    if choices is not None and v not in choices:
        raise _err(key, f"must be one of {', '.join(choices)}, got {v!r}")
    return v


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise _err(key, f"must be true or false, got {v!r}")
    return v


def _list(v: Any, key: str, *, nonempty: bool = True) -> list:
    if not isinstance(v, list):
        raise _err(key, f"must be a list, got {v!r}")
    if nonempty and not v:
        raise _err(key, "must not be empty")
    return v


def merge(base: dict, over: dict) -> dict:
    """Deep-merge TOML tables: ``over`` wins, sub-tables merge."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


# ------------------------------------------------------------------ sections
def _run(t: dict) -> RunSection:
    _check_keys(t, [f.name for f in fields(RunSection)], "run")
    d = RunSection()
    return RunSection(name=_str(t.get("name", d.name), "run.name"),
                      seed=_int(t.get("seed", d.seed), "run.seed", 0),
                      out=_str(t.get("out", d.out), "run.out"),
                      cache=_str(t.get("cache", d.cache), "run.cache"))


def _station(t: dict) -> StationSection:
    _check_keys(t, [f.name for f in fields(StationSection)], "station")
    d = StationSection()
    endpoint = t.get("endpoint")
    if endpoint is not None:
        _str(endpoint, "station.endpoint")
        if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise _err("station.endpoint", f"must start with tcp://, ipc:// or inproc://, got {endpoint!r}")
        if "path" in t:
            raise _err("station.endpoint", "give either station.path (start the rigs) or "
                       "station.endpoint (attach to running ones), not both")
    return StationSection(path=_str(t.get("path", d.path), "station.path"), endpoint=endpoint,
                          bind=_str(t.get("bind", d.bind), "station.bind", ("ipc", "inproc")),
                          timeout_s=_float(t.get("timeout_s", d.timeout_s), "station.timeout_s", 0,
                                           strict_lo=True))


def _collect_values(t: dict, where: str) -> dict:
    keys = ("sequences", "length", "repeats", "resets", "batch", "mode", "reset_prob", "holds",
            "hold_max")
    out: dict[str, Any] = {}
    for k, v in t.items():
        key = f"{where}.{k}"
        if k in ("sequences", "resets", "holds"):
            out[k] = _int(v, key, 0)
        elif k in ("length", "batch", "hold_max"):
            out[k] = _int(v, key, 1)
        elif k == "repeats":
            if not (isinstance(v, list) and len(v) == 2):
                raise _err(key, f"must be [M sequences, R repeats], got {v!r}")
            out[k] = (_int(v[0], key + "[0]", 1), _int(v[1], key + "[1]", 2))
        elif k == "mode":
            out[k] = _str(v, key, ("sequences", "long"))
        elif k == "reset_prob":
            out[k] = _float(v, key, 0, 1)
        else:
            raise _err(key, f"unknown key; {where} takes {', '.join(keys)}, active_range, or a "
                       "table per device kind")
    return out


def _collect(t: dict, kinds: tuple[str, ...]) -> CollectSection:
    t = dict(t)
    ar_t = t.pop("active_range", {})
    if not isinstance(ar_t, dict):
        raise _err("collect.active_range", "must be a table: KIND = [lo, hi]")
    per_kind = {k: _collect_values(t.pop(k), f"collect.{k}") for k in list(t)
                if isinstance(t[k], dict)}
    unknown_kinds = sorted(set(per_kind) - set(kinds))
    if unknown_kinds:
        raise _err(f"collect.{unknown_kinds[0]}", f"no network layer uses device kind "
                   f"{unknown_kinds[0]!r} (network.layers uses {', '.join(kinds)})")
    base = _collect_values(t, "collect")
    ar = {}
    for k, v in ar_t.items():
        key = f"collect.active_range.{k}"
        if not (isinstance(v, list) and len(v) == 2):
            raise _err(key, f"must be [lo, hi], got {v!r}")
        lo, hi = _float(v[0], key + "[0]"), _float(v[1], key + "[1]")
        if not lo < hi:
            raise _err(key, f"needs lo < hi, got {lo} .. {hi}")
        ar[k] = (lo, hi)
    return CollectSection(**base, active_range=ar, per_kind=per_kind)


def _twin_arch(t: dict, where: str) -> dict:
    out = {}
    for k, v in t.items():
        key = f"{where}.{k}"
        if k in ("n_delay", "n_aux"):
            out[k] = _int(v, key, 0)
        elif k in ("width", "depth", "substeps"):
            out[k] = _int(v, key, 1)
        elif k == "method":
            out[k] = _str(v, key, ("euler", "rk4", "heun"))
        elif k in ("tau0", "tau_ratio"):
            out[k] = _float(v, key, 0, strict_lo=True)
        else:
            raise _err(key, f"unknown key; twin architecture keys are {', '.join(TWIN_ARCH_KEYS)}")
    return out


def _fit_kwargs(t: dict, where: str, fn_name: str) -> dict:
    """Check fit keyword arguments against the twin engineer's function, when it exists."""
    if not isinstance(t, dict):
        raise _err(where, "must be a table of fitting settings")
    try:
        import nado.twin as twin_pkg
        fn = getattr(twin_pkg, fn_name, None)
        if inspect.ismodule(fn):  # the submodule of the same name
            fn = getattr(fn, fn_name, None)
    except ImportError:  # pragma: no cover - the package ships with nado
        fn = None
    if fn is not None:
        params = inspect.signature(fn).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            allowed = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY
                       and n not in ("progress", "seed")]
            _check_keys(t, allowed, where)
    return dict(t)


def _twins(t: dict, kinds: tuple[str, ...]) -> TwinsSection:
    t = dict(t)
    ode = _fit_kwargs(t.pop("ode", {}), "twins.ode", "fit_ode")
    sde = _fit_kwargs(t.pop("sde", {}), "twins.sde", "fit_sde")
    per_kind = {}
    for k in [k for k in t if isinstance(t[k], dict)]:
        if k not in kinds:
            raise _err(f"twins.{k}", f"no network layer uses device kind {k!r} "
                       f"(network.layers uses {', '.join(kinds)})")
        per_kind[k] = _twin_arch(t.pop(k), f"twins.{k}")
    return TwinsSection(arch=_twin_arch(t, "twins"), per_kind=per_kind, ode=ode, sde=sde)


def _task(t: dict) -> TaskSection:
    if "kind" not in t:
        raise _err("task.kind", f"is required: one of {', '.join(TASK_KINDS)}")
    kind = _str(t["kind"], "task.kind", TASK_KINDS)
    family = _task_family(kind)
    params = {k: v for k, v in t.items() if k != "kind"}
    _check_keys(params, TASK_KEYS[family], "task")
    for k, v in params.items():
        key = f"task.{k}"
        if k == "visibility":
            vis = _list(v, key)
            from ..tasks.digits import frames_for_visibility
            for i, x in enumerate(vis):
                try:
                    frames_for_visibility(_float(x, f"{key}[{i}]"))
                except ValueError as exc:
                    raise _err(f"{key}[{i}]", str(exc)) from None
        elif k in ("n_train", "n_test", "maskings", "n_samples", "sections", "section_length",
                   "input_window", "window"):
            _int(v, key, 1)
        elif k == "washout":
            _int(v, key, 0)
        elif k in ("test_fraction",):
            _float(v, key, 0, 0.9, strict_lo=True)
        elif k in ("sample_dt", "dt_fine"):
            _float(v, key, 0, strict_lo=True)
        elif k == "cutoff_hz":
            _float(v, key, 0)
        elif k == "data_dir":
            _str(v, key)
        elif k == "synthetic":
            _bool(v, key)
        elif k in ("horizons", "subjects"):
            for i, x in enumerate(_list(v, key)):
                _int(x, f"{key}[{i}]", 1)
    if kind == "mnist" and "data_dir" not in params:
        raise _err("task.data_dir", "is required for kind = 'mnist': the folder with the IDX files")
    if kind == "emg" and "data_dir" not in params:
        raise _err("task.data_dir", "is required for kind = 'emg': the folder of S{n}_A1_E2.mat files")
    if family == "mackey_glass":
        p = {"n_samples": 5100, "washout": 100, "n_train": 1000, "sections": 10,
             "section_length": 400, **params}
        need = p["washout"] + p["n_train"] + p["sections"] * p["section_length"]
        if need > p["n_samples"]:
            raise _err("task.n_samples", f"washout + n_train + sections * section_length = {need} "
                       f"exceeds n_samples = {p['n_samples']}")
        if p.get("input_window", 1) > p["n_train"]:
            raise _err("task.input_window", f"exceeds task.n_train = {p['n_train']}")
    if family == "emg" and params.get("window", 30) <= 19:
        raise _err("task.window", "must exceed 19 steps to hold the loss window (steps 12..18)")
    return TaskSection(kind=kind, params=params)


def _network(t: dict) -> NetworkSection:
    _check_keys(t, NETWORK_KEYS, "network")
    if "layers" not in t:
        raise _err("network.layers", "is required: the device kind of each hidden layer, e.g. "
                   "[\"nra\", \"nra\"]")
    layers = tuple(_str(x, f"network.layers[{i}]") for i, x in enumerate(_list(t["layers"], "network.layers")))
    params = {k: v for k, v in t.items() if k != "layers"}
    nodes = params.get("nodes")
    if nodes is not None:
        if isinstance(nodes, int) and not isinstance(nodes, bool):
            params["nodes"] = [nodes] * len(layers)
        else:
            for i, x in enumerate(_list(nodes, "network.nodes")):
                _int(x, f"network.nodes[{i}]", 1)
            if len(nodes) != len(layers):
                raise _err("network.nodes", f"lists {len(nodes)} layers but network.layers has {len(layers)}")
    else:
        params["nodes"] = [32] * len(layers)
    return NetworkSection(layers=layers, params=params)


def _variants(t: dict, task: TaskSection, layers: tuple[str, ...]) -> VariantsSection:
    _check_keys(t, ("list", "depths", "pat", "refine"), "variants")
    allowed = CLASSIFICATION_VARIANTS if task.classification else REGRESSION_VARIANTS
    default = ("sde", "ode", "rc") if task.classification else ("direct", "cascade")
    names = tuple(_str(v, f"variants.list[{i}]", allowed)
                  for i, v in enumerate(_list(t.get("list", list(default)), "variants.list")))
    depths = tuple(_int(d, f"variants.depths[{i}]", 1)
                   for i, d in enumerate(_list(t.get("depths", [len(layers)]), "variants.depths")))
    if max(depths) > len(layers):
        raise _err("variants.depths", f"depth {max(depths)} exceeds the {len(layers)} layers of "
                   "network.layers")
    from ..network.pat import PatOptions            # the options check their own keys
    from ..network.refine import RefineOptions
    PatOptions.from_dict(_table(t, "pat"))
    RefineOptions.from_dict(_table(t, "refine"))
    return VariantsSection(names=names, depths=depths, pat=dict(_table(t, "pat")),
                           refine=dict(_table(t, "refine")))
