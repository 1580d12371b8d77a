"""The sections of a scenario file as pydantic (v2) models, with errors that name ``section.key``.

Every section is a frozen model that forbids unknown keys. :func:`parse` validates one TOML
table into its model and turns the first problem into a :class:`nado.errors.ConfigError` whose
message starts with the dotted key (``collect.repeats[1]: must be >= 2, got 1``).
:mod:`nado.pipeline.scenario` assembles the sections (see its docstring for the format).

Scalars are strict the way TOML is typed: an integer key refuses ``1.5`` and ``true``, a number
refuses strings and NaN, a string refuses numbers. Checks that span keys (``[collect.KIND]``
tables, the fit functions' keyword arguments, the task's lengths) raise :class:`At`, a
``ValueError`` that carries the key below the field it was raised in.
"""
from __future__ import annotations

import copy
import inspect
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, \
    field_validator, model_validator

from ..device import check_device_spec
from ..errors import ConfigError

TASK_KINDS = ("digits", "mnist", "mnist5k", "mackey_glass", "emg")
NETWORK_KEYS = ("layers", "nodes", "pi", "bias", "init_gain", "readout_from")
SECTIONS = ("run", "station", "rigs", "collect", "twins", "task", "network", "train", "variants",
            "pools", "budget")
_HIDDEN = frozenset({"per_kind", "arch", "params"})   # model fields that the TOML file does not name


class At(ValueError):
    """A problem at ``key`` below the field (or model) whose validator raised it."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(why)
        self.key = key


# ------------------------------------------------------------------ scalars, strict as TOML
def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be an integer, got {v!r}")
    return v


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {v!r}")
    return float(v)


def _string(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {v!r}")
    return v


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _nonempty_list(v: Any) -> list:
    if not isinstance(v, list):
        raise ValueError(f"must be a list, got {v!r}")
    if not v:
        raise ValueError("must not be empty")
    return v


Int = Annotated[int, BeforeValidator(_int)]
Number = Annotated[float, BeforeValidator(_number)]
Str = Annotated[str, BeforeValidator(_string)]
Bool = Annotated[bool, BeforeValidator(_boolean)]
Count = Annotated[Int, Field(ge=0)]
Positive = Annotated[Int, Field(ge=1)]


def _used_kinds(v: dict, info: ValidationInfo) -> dict:
    """A ``[SECTION.KIND]`` table must name a device kind that a network layer uses."""
    kinds = (info.context or {}).get("kinds", ())
    for k in v:
        if k not in kinds:
            raise At(k, f"no network layer uses device kind {k!r} (network.layers uses {', '.join(kinds)})")
    return v


class Section(BaseModel):
    """Base of every section: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------ errors
def _path(where: str, loc: tuple, extra: str = "") -> str:
    out = where
    for part in loc:
        if part in _HIDDEN:
            continue
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    if extra:
        out += extra if extra.startswith("[") else f".{extra}"
    return out


def _why(err: dict, model: type[BaseModel], where: str) -> tuple[str, str]:
    """``(extra key, message)`` of one pydantic error."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "value_error" and isinstance(ctx.get("error"), At):
        return ctx["error"].key, str(ctx["error"])
    if kind == "value_error":
        return "", str(ctx.get("error", err["msg"]))
    if kind == "extra_forbidden":
        owner = _owner(model, err["loc"][:-1])
        keys = ", ".join(f.validation_alias if isinstance(f.validation_alias, str) else k
                         for k, f in owner.model_fields.items() if k not in _HIDDEN) if owner else ""
        return "", f"unknown key; {_path(where, err['loc'][:-1])} takes {keys}"
    if kind == "missing":
        return "", "is required"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return "", f"must be {op} {bound}, got {got!r}"
    if kind == "literal_error":
        return "", f"must be one of {ctx.get('expected')}, got {got!r}"
    if kind == "too_short":
        return "", "must not be empty"
    return "", f"{err['msg']}, got {got!r}"


def _owner(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (for listing its keys)."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        ann = field.annotation
        for cand in getattr(ann, "__args__", ()) + (ann,):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
    return model


def nested(model: type[BaseModel], value: Any, where: str, **context: Any):
    """Validate ``value`` as ``model`` inside another model's validator: the first problem becomes
    an :class:`At` naming the key below the field."""
    try:
        return model.model_validate(value, context=context)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        extra, why = _why(err, model, where)
        raise At(_path("", err["loc"], extra).lstrip("."), why) from None


def parse(model: type[BaseModel], table: Any, where: str, **context: Any):
    """Validate ``table`` as ``model``; ConfigError ``where.key: why`` on the first problem."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table ([{where}]), got {type(table).__name__}")
    try:
        return model.model_validate(table, context=context)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        extra, why = _why(err, model, where)
        raise ConfigError(f"{_path(where, err['loc'], extra)}: {why}") from None


# ------------------------------------------------------------------ sections
class RunSection(Section):
    name: Str = "run"
    seed: Count = 0
    out: Str = "runs"
    cache: Str = ".nado-cache"
    device: Str = "auto"          # "auto" | "cpu" | "cuda" | "cuda:N" (nado.device)
    tensorboard: Bool = True      # event files in the run folder when tensorboard is installed
    jobs: Positive = 1            # task conditions in this many worker processes (nado.pipeline.parallel)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device_spec(v, "run.device")


class StationSection(Section):
    path: Str = "builtin"
    endpoint: Str | None = None
    bind: Literal["ipc", "inproc"] = "ipc"
    timeout_s: Annotated[Number, Field(gt=0)] = 60.0

    @field_validator("endpoint")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"must start with tcp://, ipc:// or inproc://, got {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, t: Any) -> Any:
        if isinstance(t, dict) and t.get("endpoint") is not None and "path" in t:
            raise At("endpoint", "give either station.path (start the rigs) or station.endpoint "
                     "(attach to running ones), not both")
        return t


Repeats = tuple[Annotated[Int, Field(ge=1)], Annotated[Int, Field(ge=2)]]


def _pair(what: str):
    def check(v: Any) -> Any:
        if not (isinstance(v, (list, tuple)) and len(v) == 2):
            raise ValueError(f"must be {what}, got {v!r}")
        return tuple(v)
    return BeforeValidator(check)


class CollectKind(Section):
    """``[collect]`` keys (and a ``[collect.KIND]`` table's: those that differ for one kind)."""

    sequences: Count = 2000
    length: Positive = 20
    repeats: Annotated[Repeats, _pair("[M sequences, R repeats]")] = (100, 50)
    resets: Count = 500
    batch: Positive = 500
    mode: Literal["sequences", "long"] = "sequences"
    reset_prob: Annotated[Number, Field(ge=0, le=1)] = 0.02
    holds: Count = 0          # extra dynamics sequences of held / extreme inputs (nado.data.supplement)
    hold_max: Positive = 8    # longest hold, steps


class CollectSection(CollectKind):
    active_range: dict[str, Annotated[tuple[Number, Number], _pair("[lo, hi]")]] = Field(default_factory=dict)
    per_kind: Annotated[dict[str, CollectKind], AfterValidator(_used_kinds)] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _kind_tables(cls, t: Any) -> Any:
        if not isinstance(t, dict):
            return t
        t = dict(t)
        if not isinstance(t.get("active_range", {}), dict):
            raise At("active_range", "must be a table: KIND = [lo, hi]")
        t["per_kind"] = {k: t.pop(k) for k in list(t) if k != "active_range" and isinstance(t[k], dict)}
        return t

    @field_validator("active_range")
    @classmethod
    def _ordered(cls, v: dict) -> dict:
        for k, (lo, hi) in v.items():
            if not lo < hi:
                raise At(k, f"needs lo < hi, got {lo} .. {hi}")
        return v

    def own(self, kind: str) -> dict[str, Any]:
        """The keys a ``[collect.KIND]`` table sets for ``kind``."""
        t = self.per_kind.get(kind)
        return {} if t is None else t.model_dump(exclude_unset=True)

    def for_kind(self, kind: str) -> dict[str, Any]:
        """The collect keyword arguments for one device kind."""
        base = {k: getattr(self, k) for k in ("sequences", "length", "repeats", "resets", "batch",
                                              "mode", "reset_prob")}
        base.update({k: v for k, v in self.own(kind).items() if k in base})
        base["repeats"] = tuple(int(v) for v in base["repeats"])
        ar = self.active_range.get(kind)
        base["active_range"] = None if ar is None else tuple(float(v) for v in ar)
        return base

    def holds_for(self, kind: str) -> dict[str, int]:
        """``{holds, hold_max, length, batch}`` of the structured supplement for one kind."""
        own = self.own(kind)
        return {k: int(own.get(k, getattr(self, k))) for k in ("holds", "hold_max", "length", "batch")}


class TwinArch(Section):
    """Architecture keys of :class:`nado.twin.TwinConfig` a scenario may set."""

    n_delay: Count | None = None
    n_aux: Count | None = None
    width: Positive | None = None
    depth: Positive | None = None
    substeps: Positive | None = None
    method: Literal["euler", "rk4", "heun"] | None = None
    tau0: Annotated[Number, Field(gt=0)] | None = None
    tau_ratio: Annotated[Number, Field(gt=0)] | None = None


def _fit_keys(fn_name: str) -> list[str] | None:
    """Keyword arguments of the fit function (None when it takes ``**kwargs``)."""
    import nado.twin as twin_pkg
    fn = getattr(twin_pkg, fn_name, None)
    if inspect.ismodule(fn):  # the submodule of the same name
        fn = getattr(fn, fn_name, None)
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY and n not in ("progress", "seed")]


class TwinsSection(Section):
    arch: TwinArch = Field(default_factory=TwinArch)                  # every kind
    per_kind: Annotated[dict[str, TwinArch], AfterValidator(_used_kinds)] = Field(default_factory=dict)
    ode: dict = Field(default_factory=dict)                           # fit_ode keyword arguments
    sde: dict = Field(default_factory=dict)                           # fit_sde keyword arguments

    @model_validator(mode="before")
    @classmethod
    def _tables(cls, t: Any) -> Any:
        if not isinstance(t, dict):
            return t
        t = dict(t)
        out = {"ode": t.pop("ode", {}), "sde": t.pop("sde", {})}
        out["per_kind"] = {k: t.pop(k) for k in list(t) if isinstance(t[k], dict)}
        out["arch"] = t
        return out

    @field_validator("ode", "sde", mode="before")
    @classmethod
    def _fit_kwargs(cls, v: Any, info: ValidationInfo) -> dict:
        if not isinstance(v, dict):
            raise ValueError("must be a table of fitting settings")
        allowed = _fit_keys(f"fit_{info.field_name}")
        unknown = sorted(set(v) - set(allowed)) if allowed is not None else []
        if unknown:
            raise At(unknown[0], f"unknown key; twins.{info.field_name} takes {', '.join(sorted(allowed))}")
        return dict(v)

    def arch_for(self, kind: str) -> dict[str, Any]:
        own = self.per_kind.get(kind)
        return {**self.arch.model_dump(exclude_unset=True), **(own.model_dump(exclude_unset=True) if own else {})}

    def tables(self) -> dict[str, Any]:
        """The section as TOML tables (what the run folder keeps)."""
        out = self.arch.model_dump(exclude_unset=True)
        out.update({k: v.model_dump(exclude_unset=True) for k, v in self.per_kind.items()})
        out["ode"], out["sde"] = dict(self.ode), dict(self.sde)
        return out


def _visibility(v: Any) -> list:
    from ..tasks.digits import frames_for_visibility
    for i, x in enumerate(_nonempty_list(v)):
        try:
            frames_for_visibility(_number(x))
        except ValueError as exc:
            raise At(f"[{i}]", str(exc)) from None
    return v


class DigitsTask(Section):
    visibility: Annotated[list, BeforeValidator(_visibility)] | None = None
    n_train: Positive | None = None
    n_test: Positive | None = None
    maskings: Positive | None = None
    test_fraction: Annotated[Number, Field(gt=0, le=0.9)] | None = None
    data_dir: Str | None = None


Steps = Annotated[list[Positive], BeforeValidator(_nonempty_list)]


class MackeyGlassTask(Section):
    n_samples: Positive = 5100
    washout: Count = 100
    n_train: Positive = 1000
    sections: Positive = 10
    section_length: Positive = 400
    horizons: Steps | None = None
    sample_dt: Annotated[Number, Field(gt=0)] | None = None
    dt_fine: Annotated[Number, Field(gt=0)] | None = None
    input_window: Positive | None = None

    @model_validator(mode="after")
    def _lengths(self) -> "MackeyGlassTask":
        need = self.washout + self.n_train + self.sections * self.section_length
        if need > self.n_samples:
            raise At("n_samples", f"washout + n_train + sections * section_length = {need} exceeds "
                     f"n_samples = {self.n_samples}")
        if (self.input_window or 1) > self.n_train:
            raise At("input_window", f"exceeds task.n_train = {self.n_train}")
        return self


class EmgTask(Section):
    data_dir: Str | None = None
    subjects: Steps | None = None
    synthetic: Bool | None = None
    window: Positive = 30
    cutoff_hz: Annotated[Number, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _loss_window(self) -> "EmgTask":
        if self.window <= 19:
            raise At("window", "must exceed 19 steps to hold the loss window (steps 12..18)")
        return self


FAMILIES = {"digits": DigitsTask, "mackey_glass": MackeyGlassTask, "emg": EmgTask}


def _task_family(kind: str) -> str:
    return "digits" if kind in ("digits", "mnist", "mnist5k") else kind


class TaskSection(Section):
    kind: Literal[TASK_KINDS]
    params: dict = Field(default_factory=dict)   # the file's other [task] keys, as given

    @model_validator(mode="before")
    @classmethod
    def _split(cls, t: Any) -> Any:
        if isinstance(t, dict) and "params" not in t:
            return {**({"kind": t["kind"]} if "kind" in t else {}),
                    "params": {k: v for k, v in t.items() if k != "kind"}}
        return t

    @field_validator("params")
    @classmethod
    def _family_keys(cls, v: dict, info: ValidationInfo) -> dict:
        kind = info.data.get("kind")
        if kind is not None:
            nested(FAMILIES[_task_family(kind)], v, "task")
            if kind in ("mnist", "emg") and "data_dir" not in v:
                what = "the folder with the IDX files" if kind == "mnist" else "the folder of S{n}_A1_E2.mat files"
                raise At("data_dir", f"is required for kind = {kind!r}: {what}")
        return v

    @property
    def family(self) -> str:
        return _task_family(self.kind)

    @property
    def classification(self) -> bool:
        return self.family != "mackey_glass"


class NetworkSection(Section):
    layers: tuple[Str, ...]
    nodes: Any = Field(default=None, validate_default=True)
    pi: Any = None
    bias: Any = None
    init_gain: Any = None
    readout_from: Any = None

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        return _nonempty_list(v)

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: Any, info: ValidationInfo) -> list[int]:
        n_layers = len(info.data.get("layers", ()))
        if v is None:
            return [32] * n_layers
        if isinstance(v, int) and not isinstance(v, bool):
            return [v] * n_layers
        for i, x in enumerate(_nonempty_list(v)):
            try:
                if _int(x) < 1:
                    raise ValueError(f"must be >= 1, got {x}")
            except ValueError as exc:
                raise At(f"[{i}]", str(exc)) from None
        if len(v) != n_layers:
            raise ValueError(f"lists {len(v)} layers but network.layers has {n_layers}")
        return list(v)

    @property
    def params(self) -> dict[str, Any]:
        """``nodes`` and whichever of ``pi``, ``bias``, ``init_gain``, ``readout_from`` the file sets
        (TrainConfig keys)."""
        return {"nodes": self.nodes, **{k: getattr(self, k) for k in ("pi", "bias", "init_gain", "readout_from")
                                         if k in self.model_fields_set}}


class VariantsSection(Section):
    names: tuple[Str, ...] = Field(default=None, validation_alias="list", validate_default=True)
    depths: tuple[Positive, ...] = Field(default=None, validate_default=True)
    pat: dict[str, Any] | None = None       # [variants.pat]: nado.network.pat.PatOptions keys
    refine: dict[str, Any] | None = None    # [variants.refine]: nado.network.refine.RefineOptions keys

    @field_validator("pat")
    @classmethod
    def _pat(cls, v: dict | None) -> dict | None:
        from ..network.pat import PatOptions            # the options check their own keys
        PatOptions.from_dict(v)
        return v

    @field_validator("refine")
    @classmethod
    def _refine(cls, v: dict | None) -> dict | None:
        from ..network.refine import RefineOptions
        RefineOptions.from_dict(v)
        return v

    @field_validator("names", mode="before")
    @classmethod
    def _names(cls, v: Any, info: ValidationInfo) -> Any:
        from ..network.variants import VARIANTS
        task = "classification" if (info.context or {}).get("classification", True) else "regression"
        if v is None:
            return ("sde", "ode", "rc") if task == "classification" else ("direct", "cascade")
        allowed = [n for n, var in VARIANTS.items() if task in var.tasks]
        for i, x in enumerate(_nonempty_list(v)):
            if _string(x) not in allowed:
                raise At(f"[{i}]", f"must be one of {', '.join(allowed)} ({task}), got {x!r}")
        return v

    @field_validator("depths", mode="before")
    @classmethod
    def _depths(cls, v: Any, info: ValidationInfo) -> Any:
        n_layers = (info.context or {}).get("layers", 1)
        return [n_layers] if v is None else _nonempty_list(v)

    @field_validator("depths")
    @classmethod
    def _deep_enough(cls, v: tuple, info: ValidationInfo) -> tuple:
        n_layers = (info.context or {}).get("layers", 1)
        if max(v) > n_layers:
            raise ValueError(f"depth {max(v)} exceeds the {n_layers} layers of network.layers")
        return v


def merge(base: dict, over: dict) -> dict:
    """Deep-merge TOML tables: ``over`` wins, sub-tables merge."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
