"""The network stages of ``nado run``: train each variant on twins, transfer, baselines, cascade.

The variants, their seed rule and their metrics reducer are :mod:`nado.network.variants`'
registry (the same steps ``nado train | transfer`` and :func:`nado.network.run_variants` take);
this module adds the stage cache: a network's weights (``train-VARIANT``), its metrics
(``transfer-VARIANT``), a baseline's (``baseline-VARIANT``), a software reference's
(``software-VARIANT``). Variants (``[variants] list``):

- ``sde`` / ``ode``: a network of SDE twins (trained with their noise) / of ODE twins
  (noise-free), trained by BPTT (:func:`nado.network.train_network`), then run on the
  rigs through the bus (:func:`nado.network.transfer.transfer_metrics`);
- ``rc`` / ``rc1``: reservoir baselines with random weights matched to the SDE network's
  (same architecture / one layer of the same node count), readout by ridge regression
  on simulated and on physical activities (:func:`nado.network.baselines.reservoir_baseline`);
- ``mlp`` / ``leaky``: software references of the same shape (simulation only);
- ``direct`` / ``cascade`` (regression): all layers trained jointly on SDE twins vs
  layer by layer on recorded physical activities (:mod:`nado.network.cascade`), for
  every depth in ``[variants] depths``.

For digits, every metric is computed on each test masking and averaged
(``accuracy`` = mean, ``accuracy_by_masking``, ``accuracy_std``). Results go to
``results["networks"]`` (the first condition) and ``results["conditions"][NAME]["networks"]``;
regression adds ``results["conditions"][NAME]["by_depth"]["L2"...]``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bridge.datakeys import without_data_keys

from ..io import save_npy_atomic, write_json_atomic
from ..network.variants import Job, Trained, get, measure_variant, order, train_variant
from .cache import code_digest

TRAIN_DROP = ("progress",)


def run_networks(runner, conditions, clients) -> None:
    """Every variant of every condition; fills ``runner.results``."""
    sc = runner.sc
    for i, cond in enumerate(conditions):
        entry = runner.results["conditions"][cond.name]
        if sc.task.classification:
            nets = _classification(runner, cond, clients)
        else:
            nets, by_depth = _regression(runner, cond, clients)
            entry["by_depth"] = by_depth
            target = runner.run_dir / f"targets_{cond.name}.npy"
            save_npy_atomic(target, np.asarray(cond.data["y_test"], dtype=np.float32))
            entry["targets_file"] = str(target)
        entry["networks"] = nets
        if i == 0:
            runner.results["networks"] = nets


# ---------------------------------------------------------------------- the variant loop
def _job(runner, cond, cfg, layers, clients) -> Job:
    twins = {k: _twins(runner, k, layers) for k in ("sde", "ode")}
    return Job(cond, cfg, twins, [clients[k] for k in layers], runner.seed, device=runner.device)


def _twins(runner, kind: str, layers) -> list | None:
    try:
        return [runner.twins[k][kind] for k in layers]
    except KeyError:
        return None


def _twin_keys(runner, kind: str, layers) -> list[str]:
    return [runner.keys[f"{kind}.{k}"] for k in layers]


def _rig_ident(runner, layers) -> list:
    return [runner.results["rigs"][runner.sc.rig_name(k)]["describe"] for k in layers]


def _cfg_dict(cfg) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in TRAIN_DROP}


def _variants(runner, cond, job: Job, names, layers, *, suffix: str = "", keep_outputs: bool = False
              ) -> dict[str, Any]:
    """Every variant of ``names`` (and what they need) on one condition, each step cached."""
    nets: dict[str, Any] = {}
    trained: dict[str, Trained] = {}
    keys: dict[str, str] = {}
    for v in order(names):
        spec, tag = get(v), f"{v}{suffix}"
        job = replace(job, trained=trained)
        if spec.kind == "network":
            with runner.timed(f"train.{cond.name}.{tag}"):
                trained[v], keys[v] = _train_net(runner, v, tag, cond, job, layers)
            if v in names:
                with runner.timed(f"transfer.{cond.name}.{tag}"):
                    res = _transfer(runner, v, tag, cond, trained[v], keys[v], job, layers, keep_outputs)
                nets[v] = {**res, "history": trained[v].history}
        elif spec.kind == "software":
            with runner.timed(f"train.{cond.name}.{tag}"):
                nets[v] = _software(runner, v, tag, cond, job)
        else:
            with runner.timed(f"baseline.{cond.name}.{tag}"):
                nets[v] = _baseline(runner, v, tag, cond, job, keys, layers)
    return nets


def _build(twins, cfg, data, seed):
    from ..network import Network, as_task_data
    t = as_task_data(data)
    return Network(twins, cfg.nodes, t.n_inputs, t.n_outputs, pi=cfg.pi_specs(), bias=cfg.bias,
                   init_gain=cfg.init_gain, seed=seed)


def _train_net(runner, v: str, tag: str, cond, job: Job, layers) -> tuple[Trained, str]:
    """Train (or load) the network of variant ``v``; returns it and its cache key."""
    spec = get(v)
    cfg = replace(job.config, noise=spec.noise)
    inputs = {"variant": tag, "condition": cond.name, "task": runner.keys["task"],
              "train": _cfg_dict(cfg), "twins": _twin_keys(runner, spec.twins, layers), "seed": runner.seed,
              "code": code_digest("nado.network")}
    if spec.rigs_to_train:
        inputs["rigs"] = [without_data_keys(c.describe()) for c in job.clients]   # the rigs, not their endpoint
    d, done = runner.cache.lookup(f"train-{tag}", inputs)
    if not done:
        t = train_variant(v, job)
        torch.save({k: v.cpu() for k, v in t.model.state_dict().items()}, d / "weights.pt")
        write_json_atomic(d / "history.json", t.history)
        runner.cache.finish(d)
    net = _build(job.twins[spec.twins], cfg, cond.data, runner.seed)
    net.load_state_dict(torch.load(d / "weights.pt", map_location=runner.device, weights_only=True))
    return Trained(net, _read(d / "history.json"), cfg), d.name


def _read(path: Path) -> Any:
    import json
    return json.loads(path.read_text())


def _transfer(runner, v, tag, cond, trained: Trained, train_key, job: Job, layers, keep_outputs=False):
    """Sim and transfer metrics of a trained network over every test masking (cached)."""
    inputs = {"train": train_key, "rigs": _rig_ident(runner, layers), "maskings": job.maskings,
              "seed": runner.seed, "code": code_digest("nado.network")}
    d, done = runner.cache.lookup(f"transfer-{tag}", inputs)
    if not done:
        summary = measure_variant(v, trained, job, keep_outputs=keep_outputs)
        outputs = summary.pop("outputs", None)
        if outputs is not None:
            np.save(d / "outputs.npy", np.asarray(outputs, dtype=np.float32))
        write_json_atomic(d / "metrics.json", summary)
        runner.cache.finish(d)
    summary = _read(d / "metrics.json")
    runner.results["instrument_s"][f"transfer.{cond.name}.{tag}"] = summary["instrument_s"]
    if (d / "outputs.npy").is_file():
        summary["outputs_file"] = str(d / "outputs.npy")
    summary["cached"] = done
    return summary


def _baseline(runner, v, tag, cond, job: Job, keys: dict[str, str], layers) -> dict[str, Any]:
    """A baseline built from a trained network (``rc``, ``rc1``), over every test masking (cached)."""
    base = next(n for n in get(v).needs if n in job.trained)
    inputs = {"base": keys[base], "variant": v, "rigs": _rig_ident(runner, layers), "maskings": job.maskings,
              "seed": runner.seed, "code": code_digest("nado.network")}
    d, done = runner.cache.lookup(f"baseline-{tag}", inputs)
    if not done:
        write_json_atomic(d / "metrics.json", measure_variant(v, None, job))
        runner.cache.finish(d)
    return {**_read(d / "metrics.json"), "cached": done}


def _software(runner, v, tag, cond, job: Job) -> dict[str, Any]:
    """A software reference: trained and measured in simulation (cached)."""
    inputs = {"variant": tag, "condition": cond.name, "task": runner.keys["task"],
              "train": _cfg_dict(job.config), "seed": runner.seed, "code": code_digest("nado.network")}
    d, done = runner.cache.lookup(f"software-{tag}", inputs)
    if not done:
        t = train_variant(v, job)
        write_json_atomic(d / "metrics.json", {**measure_variant(v, t, job), "history": t.history})
        runner.cache.finish(d)
    return {**_read(d / "metrics.json"), "cached": done}


def _classification(runner, cond, clients) -> dict[str, Any]:
    sc = runner.sc
    layers = sc.network.layers
    job = _job(runner, cond, sc.train_config(progress=runner.progress), layers, clients)
    return _variants(runner, cond, job, list(sc.variants.names), layers)


# ---------------------------------------------------------------------- regression
def _per_section(outputs: np.ndarray, targets: np.ndarray, washout: int) -> dict[str, Any]:
    """MSE per horizon averaged over sections, with its std over sections (Fig. 4b error bars)."""
    err = ((np.asarray(outputs, np.float64) - np.asarray(targets, np.float64))[:, washout:] ** 2).mean(1)
    return {"mse_by_horizon_sections": err.tolist(), "mse_by_horizon_std": err.std(0).tolist()}


def regression_columns(res: dict, cond, outputs: np.ndarray | None) -> None:
    """Finish a regression variant's metrics in place: the per-section MSE of the rigs' ``outputs``
    (masking 0, when transferred) and every MSE in the series' own units."""
    if outputs is not None:
        res["transfer"].update(_per_section(outputs, cond.data["y_test"], int(cond.data.get("washout", 0))))
    _natural_units(res, cond.info.get("scale_std", 1.0))


def _natural_units(res: dict, std: float) -> None:
    """MSE values of standardised targets -> the series' own units (x std^2); NMSE unchanged."""
    f = float(std) ** 2
    for col in ("sim", "transfer"):
        m = res.get(col) or {}
        for k in ("mse", "mse_by_horizon", "mse_by_horizon_sections", "mse_by_horizon_std"):
            if k in m:
                m[k] = _scale(m[k], f)
        m["units"] = "series"


def _scale(v, f):
    if isinstance(v, dict):
        return {k: _scale(x, f) for k, x in v.items()}
    if isinstance(v, list):
        return [_scale(x, f) for x in v]
    return float(v) * f


def _regression(runner, cond, clients) -> tuple[dict[str, Any], dict[str, Any]]:
    sc = runner.sc
    base = sc.train_config(progress=runner.progress)
    by_depth: dict[str, Any] = {}
    for L in sc.variants.depths:
        layers = sc.network.layers[:L]
        pi = base.pi[:L] if isinstance(base.pi, (list, tuple)) else base.pi
        job = _job(runner, cond, replace(base, nodes=tuple(base.nodes[:L]), pi=pi), layers, clients)
        depth = _variants(runner, cond, job, list(sc.variants.names), layers, suffix=f"-L{L}",
                          keep_outputs=True)
        for res in depth.values():
            regression_columns(res, cond, np.load(res["outputs_file"]) if "outputs_file" in res else None)
        by_depth[f"L{L}"] = depth
    deepest = by_depth[f"L{max(sc.variants.depths)}"]
    return dict(deepest), by_depth
