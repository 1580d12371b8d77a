"""Stage helpers the ``nado train | transfer | cascade`` commands share (and ``nado run`` may use).

- :func:`load_twins_dir` reads fitted twins ``DIR/KIND-ode.pt`` and ``DIR/KIND-sde.pt``
  (checkpoints of :func:`nado.twin.checkpoint.save_twin`).
- :func:`twins_by_layer` / :func:`clients_by_layer` order them by ``[network] layers``.
- :func:`train_stage`, :func:`transfer_stage`, :func:`cascade_stage`: one task
  condition each, returning the plain dicts written to ``train.json``,
  ``transfer.json`` and ``cascade.json`` under the output folder. Training and measuring are
  :mod:`nado.network.variants`' steps, the ones ``nado run`` takes (same seeds, same numbers).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..network.checkpoint import load_network, save_network
from ..network.config import TrainConfig
from ..network.variants import Job, Trained, get, measure_variant, train_variant
from .scenario import variant_config


def load_twins_dir(folder: str | Path, kinds: Sequence[str], *, map_location="cpu") -> dict[str, dict[str, Any]]:
    """``{kind: {"ode": Twin, "sde": Twin}}`` from ``folder/KIND-{ode,sde}.pt`` (missing ones omitted),
    built on the device ``map_location``."""
    from ..twin.checkpoint import load_twin
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"twins folder {folder} does not exist; fit twins first (`nado fit`) and pass "
                          "--twins DIR holding KIND-ode.pt and KIND-sde.pt")
    out: dict[str, dict[str, Any]] = {}
    for k in kinds:
        for v in ("ode", "sde"):
            p = folder / f"{k}-{v}.pt"
            if p.is_file():
                out.setdefault(k, {})[v] = load_twin(p, map_location=map_location)
        if k not in out:
            raise ConfigError(f"no twin for device kind {k!r} in {folder} (expected {k}-ode.pt / {k}-sde.pt)")
    return out


def twins_by_layer(twins: dict, layers: Sequence[str], variant: str) -> list | None:
    """The ``variant`` ('ode' | 'sde') twin of each layer's kind, or None if one is missing."""
    try:
        return [twins[k][variant] for k in layers]
    except KeyError:
        return None


def clients_by_layer(clients: dict, layers: Sequence[str]) -> list:
    return [clients[k] for k in layers]


def _job(cond, twins: dict, layers: Sequence[str], config: TrainConfig, clients, seed: int, device="cpu") -> Job:
    return Job(cond, config, {k: twins_by_layer(twins, layers, k) for k in ("sde", "ode")}, clients, seed,
               device=device)


def train_stage(cond, twins: dict, layers: Sequence[str], config: TrainConfig, variants: Sequence[str],
                out_dir: Path, *, seed: int = 0, device="cpu", per_variant=None) -> dict[str, Any]:
    """Train the network and software variants of one condition; save them under ``out_dir``.

    Variants whose twins are missing, that train on the rigs (``cascade``) or have no training
    of their own (baselines) are skipped; ``per_variant``: a scenario's ``[train.VARIANT]`` keys
    (:func:`~nado.pipeline.scenario.variant_config`). ``{variant: {sim, history}}``."""
    job = _job(cond, twins, layers, config, None, seed, device)
    res: dict[str, Any] = {}
    for v in variants:
        spec = get(v)
        if spec.train is None or spec.rigs_to_train or (spec.kind == "network" and job.twins[spec.twins] is None):
            continue
        vjob = replace(job, config=variant_config(config, per_variant or {}, v))
        t = train_variant(v, vjob)
        save_network(t.model, out_dir / f"{v}.pt", meta={"variant": v, "layers": list(layers), "seed": seed,
                                                         "config": t.config.to_dict()})
        res[v] = {"sim": measure_variant(v, t, vjob)["sim"], "history": t.history}
    return res


def transfer_stage(cond, twins: dict, layers: Sequence[str], config: TrainConfig, variants: Sequence[str],
                   clients: list, net_dir: Path, *, seed: int = 0, device="cpu") -> dict[str, Any]:
    """Measure the saved networks of one condition on the rigs (software ones in simulation) and
    add the baselines (``rc``, ``rc1``, from the ``sde`` network, else ``ode``). ``{variant: {sim,
    transfer, ...}}``: the numbers ``nado run`` reports for the same scenario and seed."""
    job = _job(cond, twins, layers, config, clients, seed, device)
    trained: dict[str, Trained] = {}
    for v in variants:
        spec, p = get(v), net_dir / f"{v}.pt"
        if spec.train is None or not p.is_file():
            continue
        tw = job.twins[spec.twins] if spec.kind == "network" else None
        if spec.kind == "network" and tw is None:
            continue
        net, meta = load_network(p, tw, map_location=device)
        trained[v] = Trained(net, {}, TrainConfig.from_dict(meta.get("config") or {}, progress=config.progress))
    job = replace(job, trained=trained)
    res: dict[str, Any] = {}
    for v in variants:
        if v in trained or (get(v).kind == "baseline" and any(n in trained for n in get(v).needs)):
            res[v] = measure_variant(v, trained.get(v), job)
    return res


def cascade_stage(cond, twins: dict, layers: Sequence[str], config: TrainConfig, depths: Sequence[int],
                  clients: list, *, seed: int = 0, per_variant=None) -> dict[str, Any]:
    """Direct vs cascade training through the SDE twins (ODE ones when there are none), after
    transfer, for each depth: the variant registry's ``direct`` and ``cascade`` with ``nado run``'s
    seeds and units. ``{"L2": {"direct": {sim, transfer, history}, "cascade": {sim, transfer,
    histories, recording_drives}}, ..., "direct": ..., "cascade": ...}`` (the top-level pair: the
    deepest). ``per_variant``: as :func:`train_stage`'s."""
    from .networks import regression_columns
    tw = twins_by_layer(twins, layers, "sde") or twins_by_layer(twins, layers, "ode")
    if tw is None:
        raise ConfigError("cascade needs a fitted twin (sde or ode) for every layer's device kind")
    out: dict[str, Any] = {}
    for L in depths:
        if L > len(config.nodes):
            raise ConfigError(f"depth {L} needs network.nodes with >= {L} entries, got {list(config.nodes)}")
        cfg = replace(config, nodes=tuple(config.nodes[:L]),
                      pi=config.pi[:L] if isinstance(config.pi, (list, tuple)) else config.pi)
        job = Job(cond, cfg, {"sde": list(tw[:L])}, list(clients[:L]), seed)
        depth: dict[str, Any] = {}
        for v in ("direct", "cascade"):
            vjob = replace(job, config=variant_config(cfg, per_variant or {}, v))
            t = train_variant(v, vjob)
            res = measure_variant(v, t, vjob, keep_outputs=True)
            regression_columns(res, cond, res.pop("outputs", None))
            if v == "direct":
                res["history"] = t.history
            else:
                res.update(histories=t.history["histories"], recording_drives=t.history["drives"])
            depth[v] = res
        out[f"L{L}"] = depth
    deepest = f"L{max(depths)}"
    out["direct"], out["cascade"] = out[deepest]["direct"], out[deepest]["cascade"]
    return out
