"""The network variants the paper compares, in one registry with one seed rule and one reducer.

Every caller goes through here: ``nado run`` (and so ``nado sweep``, whose trials are runs) through
:mod:`nado.pipeline.networks`, which caches each step; ``nado train | transfer`` through
:mod:`nado.pipeline.stages`, which saves the networks between the two commands; and
:func:`run_variants`, the plain loop without either. So the same scenario and seed give the same
numbers whichever command computed them.

A variant is a :class:`Variant` in :data:`VARIANTS`, looked up by name:

- ``kind = "network"``: a network of twins (``sde``: SDE twins, trained with their noise;
  ``ode``: ODE twins, noise-free; ``direct``: SDE twins, the regression name; ``cascade``:
  layer by layer on the rigs' recorded activities, Fig. 4a). ``train`` returns its weights;
  ``measure`` runs it in simulation and, given rig clients, on the rigs
  (:func:`nado.network.transfer.transfer_metrics`).
- ``kind = "software"``: ``mlp`` (static) / ``leaky`` (leaky-integrator) references of the same
  shape, simulation only (``transfer`` is None).
- ``kind = "rig"``: ``pat``, ``pat_finetune``, ``refine``, ``refine_uniform``: trained with the rigs
  in the loop (:mod:`nado.network.pat`, :mod:`nado.network.refine`) by ``nado run`` after the
  variants they start from (``needs``), then measured like a network.
- ``kind = "baseline"``: ``rc`` / ``rc1``: reservoirs with random weights matched to the network
  of ``needs`` (``sde``, else ``ode``), readout by ridge regression
  (:func:`nado.network.baselines.reservoir_baseline`); no training of their own.

A new variant is one :func:`register` call: ``register(Variant(name, kind, train, measure))`` (and
``tasks``: where a scenario's ``[variants] list`` may name it) with
``train(job) -> Trained`` and ``measure(trained, job, seed) -> {"sim": metrics, "transfer": metrics
| None, ...}`` for one test masking.

**Seed rule.** A variant's network is trained with ``job.seed``; its metrics on test masking ``m``
(digits conditions have several) are measured with ``job.seed + m`` (transfer and simulation
streams are derived from it inside :func:`~nado.network.transfer.transfer_metrics`). **Reducer.**
:func:`mean_metrics` averages the maskings' numbers (``KEY``), adding ``KEY_by_masking`` and
``KEY_std`` when there is more than one.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from .baselines import rc_regression, reservoir_baseline
from .config import TrainConfig
from .data import as_task_data
from .train import _config, evaluate, train_network, train_software
from .transfer import transfer_metrics


@dataclass(frozen=True)
class Job:
    """What a variant is trained and measured on (one task condition).

    ``task``: a task condition (``.data``, ``.with_test(m)``, ``.test_sets``: several test
    maskings) or plain task data (one test set). ``twins``: ``{"sde": [twin per hidden layer],
    "ode": [...]}`` (a missing kind: None). ``clients``: one rig client per hidden layer, or None
    (simulation only). ``trained``: networks of variants trained before (``rc`` uses ``sde``).
    """

    task: Any
    config: TrainConfig
    twins: Mapping[str, Sequence | None] = field(default_factory=dict)
    clients: Sequence | None = None
    seed: int = 0
    trained: Mapping[str, "Trained"] = field(default_factory=dict)
    device: Any = "cpu"     # where software references compute (networks of twins: their twins' device)

    @property
    def data(self):
        return self.task.data if hasattr(self.task, "data") else self.task

    @property
    def classification(self) -> bool:
        return as_task_data(self.data).kind == "classification"

    @property
    def maskings(self) -> int:
        return len(getattr(self.task, "test_sets", ())) or 1

    def masking(self, m: int):
        """Task data with test masking ``m``."""
        return self.task.with_test(m) if hasattr(self.task, "with_test") else self.data


@dataclass(frozen=True)
class Trained:
    """A trained model, its training history and the config it was trained with."""

    model: Any
    history: dict
    config: TrainConfig


@dataclass(frozen=True)
class Variant:
    """One entry of :data:`VARIANTS` (see the module docstring)."""

    name: str
    kind: str                                   # "network" | "software" | "baseline"
    train: Callable[[Job], Trained] | None
    measure: Callable[[Trained, Job, Any, int], dict]   # (trained, job, task data of one masking, seed)
    twins: str = "sde"                           # network: the twin kind it is built on
    noise: bool = True                           # network: trained (and simulated) with twin noise
    needs: tuple[str, ...] = ()                  # baseline: the variants it derives from, first found
    rigs_to_train: bool = False                  # training itself drives the rigs (cascade)
    tasks: tuple[str, ...] = ("classification", "regression")   # where a scenario may list it


VARIANTS: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add ``variant`` to :data:`VARIANTS` (its name must be new)."""
    if variant.name in VARIANTS:
        raise ConfigError(f"variant {variant.name!r} is registered already")
    VARIANTS[variant.name] = variant
    return variant


def get(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown network variant {name!r}; known: {', '.join(VARIANTS)}") from None


# ---------------------------------------------------------------------- one reducer
def mean_metrics(per: Sequence[dict | None]) -> dict | None:
    """Average metric dicts over test maskings (numbers only; other values from the first).

    With more than one masking, ``KEY_by_masking`` holds the values and ``KEY_std`` their std.
    None when there is no dict (a software variant's transfer column)."""
    if not per or per[0] is None:
        return None
    out: dict[str, Any] = {}
    for k, v in per[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [float(p[k]) for p in per]
            out[k] = float(np.mean(vals))
            if len(per) > 1:
                out[f"{k}_by_masking"] = vals
                out[f"{k}_std"] = float(np.std(vals))
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------- the steps
def train_variant(name: str, job: Job) -> Trained:
    """Train variant ``name`` on ``job`` (seed ``job.seed``)."""
    v = get(name)
    if v.train is None:
        raise ConfigError(f"variant {name!r} has no training of its own (it derives from {v.needs})")
    return v.train(job)


def measure_variant(name: str, trained: Trained | None, job: Job, *, keep_outputs: bool = False
                    ) -> dict[str, Any]:
    """Metrics of a trained variant over every test masking of ``job`` (seed ``job.seed + m``).

    Returns ``{"sim", "transfer", ...}`` reduced by :func:`mean_metrics`; a network adds
    ``drives`` (drive calls per hidden layer, summed over maskings) and ``instrument_s`` (summed); ``keep_outputs`` adds
    ``outputs``: the rigs' outputs on masking 0 ``(N, T, n_outputs)``.
    """
    v = get(name)
    per = [v.measure(trained, job, job.masking(m), job.seed + m) for m in range(job.maskings)]
    out: dict[str, Any] = {k: val for k, val in per[0].items() if k not in ("sim", "transfer", "raw")}
    out["sim"] = mean_metrics([p["sim"] for p in per])
    out["transfer"] = mean_metrics([p["transfer"] for p in per])
    if v.kind in ("network", "rig"):
        out["drives"] = [int(sum(d)) for d in zip(*(p["drives"] for p in per))]
        out["instrument_s"] = float(sum(p["instrument_s"] for p in per))
        if keep_outputs and per[0].get("raw") is not None:
            out["outputs"] = per[0]["raw"].outputs
    elif v.kind == "baseline":
        out["alpha"] = [p["alpha"] for p in per]
    return out


def base_of(name: str, job: Job) -> Trained:
    """The trained network a baseline derives from (the first of its ``needs`` in ``job.trained``)."""
    for n in get(name).needs:
        if n in job.trained:
            return job.trained[n]
    raise ConfigError(f"variant {name!r} needs one of {get(name).needs} trained first")


def order(names: Sequence[str]) -> list[str]:
    """``names`` with what baselines need put first (e.g. ``rc`` without ``sde`` trains ``sde``)."""
    out: list[str] = []
    for n in names:
        for dep in get(n).needs[:1]:
            if dep not in out and not any(d in names for d in get(n).needs):
                out.append(dep)
    for n in names:
        if get(n).kind != "baseline" and n not in out:
            out.append(n)
    return out + [n for n in names if get(n).kind == "baseline"]


# ---------------------------------------------------------------------- the registered variants
def _network(name: str, twins: str, noise: bool) -> Variant:
    def train(job: Job) -> Trained:
        tw = job.twins.get(twins)
        if tw is None:
            raise ConfigError(f"variant {name!r} needs a {twins} twin for every layer")
        cfg = replace(job.config, noise=noise)
        net, hist = train_network(tw, job.data, cfg, seed=job.seed)
        return Trained(net, hist, cfg)
    return Variant(name, "network", train, _measure_network, twins=twins, noise=noise)


def _measure_network(trained: Trained, job: Job, task: Any, seed: int) -> dict:
    res, raw = transfer_metrics(trained.model, job.clients, task, trained.config, seed=seed)
    return {**res, "raw": raw}


def _train_cascade(job: Job) -> Trained:
    from .cascade import run_cascade
    if job.clients is None:
        raise ConfigError("variant 'cascade' trains on the rigs: it needs rig clients")
    cfg = replace(job.config, noise=True)
    net, info = run_cascade(job.twins.get("sde"), job.clients, job.data, cfg, seed=job.seed)
    hist = {"histories": info["histories"], "drives": info["drives"], "instrument_s": info["instrument_s"]}
    return Trained(net, hist, cfg)


def _software(name: str, kind: str) -> Variant:
    def train(job: Job) -> Trained:
        net, hist = train_software(job.data, job.config, kind=kind, seed=job.seed, device=job.device)
        return Trained(net, hist, job.config)

    def measure(trained: Trained, job: Job, task: Any, seed: int) -> dict:
        return {"sim": evaluate(trained.model, as_task_data(task), trained.config, "test", seed=seed),
                "transfer": None, "software": kind}
    return Variant(name, "software", train, measure)


def _baseline(name: str, single: bool) -> Variant:
    def measure(trained: Trained | None, job: Job, task: Any, seed: int) -> dict:
        if as_task_data(task).kind == "regression":
            # the regression reference: the network's shape with random connections (its
            # initialisation) on the SDE twins / the rigs, ridge readout on physical activities
            return rc_regression(job.twins.get("sde"), job.clients, task, replace(job.config, noise=True),
                                 seed=seed)
        base = base_of(name, job)
        clients = None if job.clients is None else list(job.clients[:1] if single else job.clients)
        res = reservoir_baseline(base.model, task, base.config, clients_by_layer=clients, single_layer=single,
                                 seed=seed)
        nodes = [int(sum(base.model.n_nodes))] if single else list(base.model.n_nodes)
        return {**res, "nodes": nodes}
    return Variant(name, "baseline", None, measure, needs=("sde", "ode", "direct"))


def _rig_in_the_loop(name: str, needs: tuple[str, ...], tasks: tuple[str, ...]) -> Variant:
    """``pat``, ``pat_finetune``, ``refine``, ``refine_uniform``: trained with the rigs in the loop
    by ``nado run`` (:func:`nado.pipeline.networks.run_rigloop`: they need the run's datasets and instrument-time
    books); measured on the rigs like any network of twins."""
    return Variant(name, "rig", None, _measure_network, needs=needs, rigs_to_train=True, tasks=tasks)


REGRESSION, CLASSIFICATION = ("regression",), ("classification",)
for _v in (_network("sde", "sde", True), _network("ode", "ode", False),
           replace(_network("direct", "sde", True), tasks=REGRESSION),
           Variant("cascade", "network", _train_cascade, _measure_network, rigs_to_train=True, tasks=REGRESSION),
           replace(_software("mlp", "static"), tasks=CLASSIFICATION), _software("leaky", "leaky"),
           _baseline("rc", False), replace(_baseline("rc1", True), tasks=CLASSIFICATION)):
    register(_v)
for _v in (_rig_in_the_loop("pat", (), CLASSIFICATION),
           _rig_in_the_loop("pat_finetune", ("sde", "cascade"), ("classification", "regression")),
           _rig_in_the_loop("refine", ("sde",), CLASSIFICATION),
           _rig_in_the_loop("refine_uniform", ("sde",), CLASSIFICATION)):
    register(_v)

ALL = ("sde", "ode", "rc", "mlp", "leaky")


def run_variants(task_data: Any, config: TrainConfig | dict | None = None, *,
                 sde_twins: Sequence | None = None, ode_twins: Sequence | None = None,
                 clients_by_layer: Sequence | None = None, variants: Sequence[str] = ALL,
                 seed: int = 0, keep_networks: dict | None = None) -> dict[str, Any]:
    """Train and measure each of ``variants`` (no cache, nothing saved); the layout of
    ``results.json``'s ``networks``: ``{VARIANT: {"sim", "transfer" | None, "history", ...}}``.

    Variants whose twins are missing are skipped (and the baselines that need them);
    ``keep_networks``: a dict that receives the trained models by variant name (for saving).
    """
    twins = {"sde": sde_twins, "ode": ode_twins}
    job = Job(task_data, _config(config), twins, clients_by_layer, seed)
    trained: dict[str, Trained] = {}
    out: dict[str, Any] = {}
    for name in order(variants):
        v = get(name)
        if v.kind == "rig":
            continue                    # trained with the rigs in the loop by ``nado run`` only
        if v.kind == "network" and (twins.get(v.twins) is None or (v.rigs_to_train and clients_by_layer is None)):
            continue
        if v.kind == "baseline" and not any(n in trained for n in v.needs):
            continue
        job = replace(job, trained=trained)
        if v.train is not None:
            trained[name] = train_variant(name, job)
            if keep_networks is not None:
                keep_networks[name] = trained[name].model
        if name not in variants:
            continue
        res = measure_variant(name, trained.get(name), job)
        if name in trained:
            res["history"] = trained[name].history
        if v.kind == "network":
            res["weights"] = trained[name].model.weight_arrays()
        out[name] = res
    return out
