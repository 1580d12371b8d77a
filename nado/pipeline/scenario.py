"""Scenario files: one TOML file describes a whole run (``nado run SCENARIO.toml``).

Sections (every key optional unless marked; defaults in the dataclasses below)::

    [run]      name (default: the scenario file's stem), seed, out (parent folder of run folders),
               cache (stage cache folder), device, tensorboard, jobs (task conditions in that
               many worker processes: nado.pipeline.parallel)
    [station]  path = "builtin" | "path/to/station.toml" (relative to the scenario file)
               endpoint = "tcp://host:port" (attach to a running server instead)
               bind = "ipc" | "inproc" (how an in-process station is served), timeout_s
    [rigs]     device kind -> rig name in the station, e.g. nra = "nra", asvi = "asvi";
               or nra = "pool:NAME": drive that kind through a pool of rigs (bridge.pool)
    [pools.NAME] members = [{endpoint = "tcp://host:port", rig = "nra"}, ...], and optionally
               timeout_s, retries, chunk, down_s (bridge.pool.parse_pool). A "pool:NAME" is
               looked up here first, then in the station file's [pools.NAME]
    [collect]  sequences, length, repeats = [M, R], resets, batch, mode, reset_prob;
               holds, hold_max: extra twin-training sequences of held and extreme inputs
               (nado.data.supplement; 0 = the paper's uniform sequences only)
               [collect.active_range] KIND = [lo, hi]   (skip the sweep)
               [collect.KIND] the same keys, for one device kind
    [twins]    architecture keys of nado.twin.TwinConfig (n_delay, n_aux, width, depth, method,
               substeps, tau0, tau_ratio); [twins.KIND] the same for one kind;
               [twins.ode] / [twins.sde]: keyword arguments of nado.twin.fit_ode / fit_sde
    [task]     kind = "digits" | "mnist" | "mnist5k" | "mackey_glass" | "emg" (required), and:
               digits/mnist/mnist5k: visibility = [25, 20], n_train, n_test, maskings,
                 test_fraction, data_dir (mnist: the IDX folder, relative to the scenario file)
               mackey_glass: n_samples, washout, n_train, sections, section_length, horizons,
                 sample_dt, dt_fine, input_window (steps per training sequence)
               emg: data_dir, subjects, synthetic (write synthetic files into data_dir first),
                 window, cutoff_hz
    [network]  layers = ["nra", "nra"] (device kind per hidden layer; required), nodes, pi,
               bias, init_gain
    [train]    keyword settings of nado.network.TrainConfig (epochs, lr, batch_size, tbptt, ...);
               [train.VARIANT] the same keys for one variant of [variants] (e.g. [train.leaky]
               lr = 0.005: a software reference trains at its own rate), over [train]'s
    [variants] list = ["sde", "ode", "rc", "rc1", "mlp", "leaky"] (classification) or
               ["direct", "cascade"] (regression); depths = [2, 3] (cascade)
    [budget]   tables shaped like the sections above, merged over them by ``--quick``

:func:`load_scenario` reads, merges the budget when asked, and validates everything
before any work: a bad key or value raises :class:`nado.errors.ConfigError` naming
``section.key`` and the problem. :func:`dump_toml` writes the resolved scenario.
The sections are pydantic models in :mod:`nado.pipeline._sections`.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import ConfigError
from ._sections import (NETWORK_KEYS, SECTIONS, CollectSection, NetworkSection, RunSection, StationSection,
                        TaskSection, TwinsSection, VariantsSection, merge, parse)

__all__ = ["Scenario", "variant_config", "validate", "load_scenario", "read_toml", "dump_toml", "merge", "resolved_tables"]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. ``source`` is the file it came from (paths resolve against it)."""

    run: RunSection
    station: StationSection
    rigs: dict
    collect: CollectSection
    twins: TwinsSection
    task: TaskSection
    network: NetworkSection
    train: dict
    variants: VariantsSection
    quick: bool = False
    source: str = ""
    raw: dict = field(default_factory=dict)
    pools: dict = field(default_factory=dict)
    train_by_variant: dict = field(default_factory=dict)    # [train.VARIANT]: {VARIANT: {key: value}}

    def pool_name(self, kind: str) -> str | None:
        """NAME when ``[rigs] KIND = "pool:NAME"``, else None."""
        rig = self.rig_name(kind)
        return rig[len(POOL_PREFIX):] if rig.startswith(POOL_PREFIX) else None

    def pool_table(self, name: str) -> dict[str, Any]:
        """The ``[pools.NAME]`` table: the scenario's own, else the station file's.

        Raises ConfigError when neither has it.
        """
        if name in self.pools:
            return dict(self.pools[name])
        path = None
        if not self.station.endpoint and self.station.path != "builtin":
            path = self.resolve_path(self.station.path)
        if path is not None and path.is_file():
            try:
                table = tomllib.loads(path.read_text()).get("pools", {}).get(name)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"station.path {path} is not valid TOML: {exc}") from None
            if isinstance(table, dict):
                return dict(table)
        where = "the scenario" + (f" or its station file {path}" if path is not None else "")
        raise ConfigError(f"no [pools.{name}] in {where}; add [pools.{name}] members = "
                          "[{endpoint = \"tcp://HOST:PORT\", rig = \"nra\"}, ...]")

    @property
    def kinds(self) -> tuple[str, ...]:
        """Device kinds the network uses, in first-use order."""
        return tuple(dict.fromkeys(self.network.layers))

    def rig_name(self, kind: str) -> str:
        return self.rigs.get(kind, kind)

    def resolve_path(self, p: str | None) -> Path | None:
        """A path from the file, relative to the scenario's folder (``~`` expanded)."""
        if p is None:
            return None
        q = Path(p).expanduser()
        return q if q.is_absolute() or not self.source else Path(self.source).parent / q

    def train_config(self, **overrides):
        """The network engineer's TrainConfig from [network] and [train]."""
        from ..network import TrainConfig
        return TrainConfig.from_dict({**self.network.params, **self.train}, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as TOML-shaped tables (what the run folder keeps)."""
        return resolved_tables(self)


def variant_config(config, per_variant: dict, name: str):
    """``config`` (a TrainConfig) as variant ``name`` trains: its ``[train.VARIANT]`` keys
    (``per_variant[name]``, :attr:`Scenario.train_by_variant`) over it. Every variant loop applies
    it before the variant is trained or its stage keyed, so a variant without a table keeps its key."""
    over = per_variant.get(name)
    if not over:
        return config
    from ..network import TrainConfig
    return TrainConfig.from_dict({**config.to_dict(), **over})


def _table(raw: dict, name: str) -> dict:
    v = raw.get(name, {})
    if not isinstance(v, dict):
        raise ConfigError(f"{name}: must be a table ([{name}]), got {type(v).__name__}")
    return v


def _known(table: dict, allowed, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; {where} takes {', '.join(sorted(allowed))}")


def _train_config(d: dict, where: str) -> None:
    from ..network import TrainConfig
    try:
        TrainConfig.from_dict(d)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _variant_train(name: str, over: dict) -> None:
    """A ``[train.VARIANT]`` table names a variant and holds [train] keys only."""
    from ..network.variants import VARIANTS
    if name not in VARIANTS:
        raise ConfigError(f"train.{name}: a sub-table of [train] holds one variant's settings, and {name!r} is "
                          f"no variant; variants: {', '.join(VARIANTS)}")
    shaped = sorted(set(over) & set(NETWORK_KEYS))
    if shaped:
        raise ConfigError(f"train.{name}.{shaped[0]}: a [network] key; a variant trains the network's shape, "
                          f"so [train.{name}] takes [train] keys only (lr, epochs, batch_size, ...)")


def validate(raw: dict, *, quick: bool = False, source: str = "") -> Scenario:
    """Validate TOML tables (budget merged first when ``quick``); raise ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError("a scenario must be a TOML table")
    _known(raw, SECTIONS, "scenario")
    budget = _table(raw, "budget")
    _known(budget, [s for s in SECTIONS if s != "budget"], "budget")
    body = {k: v for k, v in raw.items() if k != "budget"}
    if quick:
        body = merge(body, budget)
    # the budget's keys must be valid too, even when not applied
    elif budget:
        validate(merge(body, budget), quick=False, source=source)
    network = parse(NetworkSection, _table(body, "network"), "network")
    kinds = tuple(dict.fromkeys(network.layers))
    task = parse(TaskSection, _table(body, "task"), "task")
    rigs = _table(body, "rigs")
    for k, v in rigs.items():
        if not isinstance(v, str):
            raise ConfigError(f"rigs.{k}: must be a string, got {v!r}")
    train = dict(_table(body, "train"))
    by_variant = {k: train.pop(k) for k in list(train) if isinstance(train[k], dict)}
    _train_config({**network.params, **train}, "[network]/[train]")
    for v, over in by_variant.items():
        _variant_train(v, over)
        _train_config({**network.params, **train, **over}, f"[train.{v}]")
    run = parse(RunSection, _table(body, "run"), "run")
    if "name" not in _table(body, "run") and source:
        run = run.model_copy(update={"name": Path(source).stem})   # default run name: the file's stem
    sc = Scenario(run=run, station=parse(StationSection, _table(body, "station"), "station"),
                  rigs=dict(rigs), collect=parse(CollectSection, _table(body, "collect"), "collect", kinds=kinds),
                  twins=parse(TwinsSection, _table(body, "twins"), "twins", kinds=kinds), task=task,
                  network=network, train=train,
                  variants=parse(VariantsSection, _table(body, "variants"), "variants",
                                 classification=task.classification, layers=len(network.layers)),
                  quick=quick, source=str(source), raw=raw, pools=_pools(body), train_by_variant=by_variant)
    _check_pooled_kinds(sc)
    return sc


POOL_PREFIX = "pool:"


def _pools(body: dict) -> dict[str, dict]:
    """The scenario's ``[pools.NAME]`` tables, checked by bridge.pool_config.parse_pools."""
    from bridge.errors import StationError
    from bridge.pool_config import parse_pools
    pools = _table(body, "pools")
    try:
        parse_pools({"pools": pools})
    except StationError as exc:
        raise ConfigError(str(exc)) from None
    return {k: dict(v) for k, v in pools.items()}


def _check_pooled_kinds(sc: Scenario) -> None:
    """Every ``pool:NAME`` exists (scenario or station file) and its kind collects with resets."""
    from bridge.errors import StationError
    from bridge.pool_config import parse_pool
    for kind in sc.kinds:
        name = sc.pool_name(kind)
        if name is None:
            continue
        if not name:
            raise ConfigError(f'rigs.{kind} = "pool:" needs a pool name, e.g. "pool:nra_lab"')
        try:
            parse_pool(sc.pool_table(name), name)
        except ConfigError as exc:
            raise ConfigError(f'rigs.{kind} = "pool:{name}": {exc}') from None
        except StationError as exc:
            raise ConfigError(f'rigs.{kind} = "pool:{name}": {exc}') from None
        if sc.collect.for_kind(kind)["mode"] == "long":
            raise ConfigError(f'collect.mode = "long" drives {kind} with reset=False (one continuing '
                              f'sequence), which a pool refuses (rigs.{kind} = "pool:{name}"): use '
                              f'mode = "sequences", or name one rig for {kind}')


def read_toml(path: str | Path) -> dict:
    """The TOML table of a scenario file; ConfigError naming the path when missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scenario file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load_scenario(path: str | Path, *, quick: bool = False) -> Scenario:
    """Read and validate a scenario file (see the module docstring)."""
    path = Path(path)
    raw = read_toml(path)
    try:
        return validate(raw, quick=quick, source=str(path.resolve()))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# ------------------------------------------------------------------ resolved form
def resolved_tables(sc: Scenario) -> dict[str, Any]:
    """Every section with its defaults filled in (JSON/TOML-able)."""
    c = sc.collect
    collect = c.model_dump(exclude={"active_range", "per_kind"})
    collect["repeats"] = list(collect["repeats"])
    if c.active_range:
        collect["active_range"] = {k: list(v) for k, v in c.active_range.items()}
    for k in c.per_kind:
        collect[k] = {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in c.own(k).items()}
    station = {k: v for k, v in sc.station.model_dump().items() if v is not None}
    if sc.station.endpoint:
        station.pop("path", None)
    elif sc.station.path != "builtin":
        station["path"] = str(sc.resolve_path(sc.station.path).resolve())
    task = {"kind": sc.task.kind, **sc.task.params}
    if "data_dir" in task:
        task["data_dir"] = str(sc.resolve_path(task["data_dir"]).resolve())
    train = {k: v for k, v in sc.train_config().to_dict().items() if k not in NETWORK_KEYS}
    train |= {v: dict(over) for v, over in sc.train_by_variant.items()}
    pools = {"pools": sc.pools} if sc.pools else {}
    return json.loads(json.dumps({
        "run": sc.run.model_dump(), "station": station,
        "rigs": {k: sc.rig_name(k) for k in sc.kinds} | dict(sc.rigs),
        "collect": collect, "twins": sc.twins.tables(), "task": task,
        "network": {"layers": list(sc.network.layers), **sc.network.params},
        "train": train,
        "variants": {"list": list(sc.variants.names), "depths": list(sc.variants.depths),
                     **{k: getattr(sc.variants, k) for k in ("pat", "refine") if getattr(sc.variants, k)}},
    } | pools, default=list))


def dump_toml(tables: dict[str, Any]) -> str:
    """Nested tables as TOML text (``tomli_w``); None values are left out (TOML has no null)."""
    return tomli_w.dumps(_without_none(tables))


def _without_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _without_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_without_none(x) for x in v]
    return v
