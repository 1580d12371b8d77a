"""The network stages of ``nado run``: train each variant on twins, transfer, baselines, cascade.

Variants (``[variants] list``):

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

from ..io import save_npy_atomic, write_json_atomic
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


# ---------------------------------------------------------------------- shared pieces
def _twins(runner, kind: str, layers) -> list:
    return [runner.twins[k][kind] for k in layers]


def _twin_keys(runner, kind: str, layers) -> list[str]:
    return [runner.keys[f"{kind}.{k}"] for k in layers]


def _rig_ident(runner, layers) -> list:
    return [runner.results["rigs"][runner.sc.rig_name(k)]["describe"] for k in layers]


def _cfg_dict(cfg) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in TRAIN_DROP}


def _build(twins, cfg, data, seed):
    from ..network import Network, as_task_data
    t = as_task_data(data)
    return Network(twins, cfg.nodes, t.n_inputs, t.n_outputs, pi=cfg.pi_specs(), bias=cfg.bias,
                   init_gain=cfg.init_gain, seed=seed)


def _train_net(runner, name: str, cond, twins, twin_keys, cfg, *, cascade_clients=None):
    """Train (or load) a network of twins; ``cascade_clients`` switches to cascade learning."""
    from ..network import train_network
    inputs = {"variant": name, "condition": cond.name, "task": runner.keys["task"],
              "train": _cfg_dict(cfg), "twins": twin_keys, "seed": runner.seed,
              "code": code_digest("nado.network")}
    if cascade_clients is not None:
        inputs["rigs"] = [c.describe() for c in cascade_clients]
    d, done = runner.cache.lookup(f"train-{name}", inputs)
    if not done:
        if cascade_clients is None:
            net, hist = train_network(twins, cond.data, cfg, seed=runner.seed)
        else:
            from ..network.cascade import run_cascade
            net, info = run_cascade(twins, cascade_clients, cond.data, cfg, seed=runner.seed)
            hist = {"histories": info["histories"], "drives": info["drives"],
                    "instrument_s": info["instrument_s"]}
        torch.save(net.state_dict(), d / "weights.pt")
        write_json_atomic(d / "history.json", hist)
        runner.cache.finish(d)
    net = _build(twins, cfg, cond.data, runner.seed)
    net.load_state_dict(torch.load(d / "weights.pt", weights_only=True))
    return net, _read(d / "history.json"), d.name


def _read(path: Path) -> Any:
    import json
    return json.loads(path.read_text())


def _mean_metrics(per: list[dict]) -> dict:
    """Average metric dicts over maskings (numbers only), keeping the per-masking values."""
    if not per:
        return {}
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


def _transfer(runner, name, cond, net, cfg, train_key, clients_by_layer, layers, *, keep_outputs=False):
    """Sim and transfer metrics of ``net`` over every test masking (cached)."""
    from ..network.transfer import transfer_metrics
    inputs = {"train": train_key, "rigs": _rig_ident(runner, layers), "maskings": len(cond.test_sets),
              "seed": runner.seed, "code": code_digest("nado.network")}
    d, done = runner.cache.lookup(f"transfer-{name}", inputs)
    if not done:
        sims, trs, drives, inst = [], [], [], 0.0
        outputs = None
        for m in range(len(cond.test_sets)):
            res, raw = transfer_metrics(net, clients_by_layer, cond.with_test(m), cfg, seed=runner.seed + m)
            sims.append(res["sim"])
            trs.append(res["transfer"])
            drives.append(res["drives"])
            inst += float(res["instrument_s"])
            if m == 0 and keep_outputs:
                outputs = raw.outputs
        summary = {"sim": _mean_metrics(sims), "transfer": _mean_metrics(trs), "drives": drives,
                   "instrument_s": inst}
        if outputs is not None:
            np.save(d / "outputs.npy", np.asarray(outputs, dtype=np.float32))
        write_json_atomic(d / "metrics.json", summary)
        runner.cache.finish(d)
    summary = _read(d / "metrics.json")
    runner.results["instrument_s"][f"transfer.{cond.name}.{name}"] = summary["instrument_s"]
    if (d / "outputs.npy").is_file():
        summary["outputs_file"] = str(d / "outputs.npy")
    summary["cached"] = done
    return summary


# ---------------------------------------------------------------------- classification
def _classification(runner, cond, clients) -> dict[str, Any]:
    sc = runner.sc
    layers = sc.network.layers
    base = sc.train_config(progress=runner.progress)
    clients_by_layer = [clients[k] for k in layers]
    nets: dict[str, Any] = {}
    trained: dict[str, Any] = {}
    names = list(sc.variants.names)
    need_sde = any(v in names for v in ("rc", "rc1", "pat_finetune", "refine", "refine_uniform"))
    order = [v for v in ("sde", "ode") if v in names or (v == "sde" and need_sde)]
    for v in order:
        cfg = replace(base, noise=(v == "sde"))
        with runner.timed(f"train.{cond.name}.{v}"):
            net, hist, key = _train_net(runner, v, cond, _twins(runner, v, layers),
                                        _twin_keys(runner, v, layers), cfg)
        trained[v] = (net, cfg, key)
        if v in names:
            with runner.timed(f"transfer.{cond.name}.{v}"):
                nets[v] = {**_transfer(runner, v, cond, net, cfg, key, clients_by_layer, layers),
                           "history": hist}
    for v in ("rc", "rc1"):
        if v not in names:
            continue
        net, cfg, key = trained["sde"]
        with runner.timed(f"baseline.{cond.name}.{v}"):
            nets[v] = _reservoir(runner, v, cond, net, cfg, key, clients, layers)
    for v, kind in (("mlp", "static"), ("leaky", "leaky")):
        if v in names:
            with runner.timed(f"train.{cond.name}.{v}"):
                nets[v] = _software(runner, v, kind, cond, base)
    from .rigloop import run_rigloop    # rig-in-the-loop variants: pat, pat_finetune, refine(_uniform)
    nets.update(run_rigloop(runner, cond, names, trained, clients_by_layer, layers, base))
    return nets


def _reservoir(runner, name, cond, sde_net, cfg, sde_key, clients, layers) -> dict[str, Any]:
    from ..network.baselines import reservoir_baseline
    single = name == "rc1"
    rig_layers = [layers[0]] if single else list(layers)
    inputs = {"sde": sde_key, "single": single, "rigs": _rig_ident(runner, rig_layers),
              "maskings": len(cond.test_sets), "seed": runner.seed, "code": code_digest("nado.network")}
    d, done = runner.cache.lookup(f"baseline-{name}", inputs)
    if not done:
        per = [reservoir_baseline(sde_net, cond.with_test(m), cfg, single_layer=single,
                                  clients_by_layer=[clients[k] for k in rig_layers], seed=runner.seed + m)
               for m in range(len(cond.test_sets))]
        summary = {"sim": _mean_metrics([p["sim"] for p in per]),
                   "transfer": _mean_metrics([p["transfer"] for p in per]),
                   "alpha": [p["alpha"] for p in per], "single_layer": single,
                   "nodes": [int(sum(sde_net.n_nodes))] if single else list(sde_net.n_nodes)}
        write_json_atomic(d / "metrics.json", summary)
        runner.cache.finish(d)
    return {**_read(d / "metrics.json"), "cached": done}


def _software(runner, name, kind, cond, cfg) -> dict[str, Any]:
    from ..network import evaluate, train_software
    from ..network import as_task_data
    inputs = {"variant": name, "condition": cond.name, "task": runner.keys["task"],
              "train": _cfg_dict(cfg), "seed": runner.seed, "code": code_digest("nado.network")}
    d, done = runner.cache.lookup(f"software-{name}", inputs)
    if not done:
        net, hist = train_software(cond.data, cfg, kind=kind, seed=runner.seed)
        sims = [evaluate(net, as_task_data(cond.with_test(m)), cfg, "test", seed=runner.seed + m)
                for m in range(len(cond.test_sets))]
        write_json_atomic(d / "metrics.json", {"sim": _mean_metrics(sims), "transfer": None,
                                               "history": hist, "software": kind})
        runner.cache.finish(d)
    return {**_read(d / "metrics.json"), "cached": done}


# ---------------------------------------------------------------------- regression
def _per_section(outputs: np.ndarray, targets: np.ndarray, washout: int) -> dict[str, Any]:
    """MSE per horizon averaged over sections, with its std over sections (Fig. 4b error bars)."""
    err = ((np.asarray(outputs, np.float64) - np.asarray(targets, np.float64))[:, washout:] ** 2).mean(1)
    return {"mse_by_horizon_sections": err.tolist(), "mse_by_horizon_std": err.std(0).tolist()}


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
    names = list(sc.variants.names)
    by_depth: dict[str, Any] = {}
    for L in sc.variants.depths:
        layers = sc.network.layers[:L]
        pi = base.pi[:L] if isinstance(base.pi, (list, tuple)) else base.pi
        cfg = replace(base, nodes=tuple(base.nodes[:L]), pi=pi)
        cl = [clients[k] for k in layers]
        depth: dict[str, Any] = {}
        from .rigloop import RIGLOOP_VARIANTS, run_rigloop
        start: dict[str, tuple] = {}
        for v in names:
            if v in RIGLOOP_VARIANTS:
                continue
            twin_kind = "ode" if v == "ode" else "sde"
            vcfg = replace(cfg, noise=(twin_kind == "sde"))
            tag = f"{v}-L{L}"
            with runner.timed(f"train.{cond.name}.{tag}"):
                net, hist, key = _train_net(runner, tag, cond, _twins(runner, twin_kind, layers),
                                            _twin_keys(runner, twin_kind, layers), vcfg,
                                            cascade_clients=cl if v == "cascade" else None)
            with runner.timed(f"transfer.{cond.name}.{tag}"):
                res = _transfer(runner, tag, cond, net, vcfg, key, cl, layers, keep_outputs=True)
            if "outputs_file" in res:
                res["transfer"].update(_per_section(np.load(res["outputs_file"]), cond.data["y_test"],
                                                    int(cond.data.get("washout", 0))))
            _natural_units(res, cond.info.get("scale_std", 1.0))
            depth[v] = {**res, "history": hist}
            start[v] = (net, vcfg, key, (hist or {}).get("instrument_s", 0.0))
        for v, r in run_rigloop(runner, cond, names, start, cl, layers, cfg, tag=f"-L{L}",
                                regression=True).items():
            _natural_units(r, cond.info.get("scale_std", 1.0))
            depth[v] = r
        by_depth[f"L{L}"] = depth
    deepest = by_depth[f"L{max(sc.variants.depths)}"]
    return dict(deepest), by_depth
