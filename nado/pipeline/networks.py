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

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bridge.datakeys import without_data_keys

from ..io import save_npy_atomic, write_json_atomic
from ..network.variants import Job, Trained, get, measure_variant, order, train_variant
from .cache import code_digest
from .scenario import variant_config

TRAIN_DROP = ("progress", "checkpoint")      # how a stage runs, not what it computes


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
        vjob = replace(job, trained=trained, config=variant_config(job.config, runner.sc.train_by_variant, v))
        if spec.kind == "rig":
            continue                    # after the loop: they start from what it trained
        if spec.kind == "network":
            with runner.timed(f"train.{cond.name}.{tag}"):
                trained[v], keys[v] = _train_net(runner, v, tag, cond, vjob, layers)
            if v in names:
                with runner.timed(f"transfer.{cond.name}.{tag}"):
                    res = _transfer(runner, v, tag, cond, trained[v], keys[v], vjob, layers, keep_outputs)
                nets[v] = {**res, "history": trained[v].history}
        elif spec.kind == "software":
            with runner.timed(f"train.{cond.name}.{tag}"):
                nets[v] = _software(runner, v, tag, cond, vjob)
        else:
            with runner.timed(f"baseline.{cond.name}.{tag}"):
                nets[v] = _baseline(runner, v, tag, cond, vjob, keys, layers)
    rig = [v for v in names if get(v).kind == "rig"]
    if rig:
        start = {v: (t.model, t.config, keys[v], (t.history or {}).get("instrument_s", 0.0))
                 for v, t in trained.items()}
        nets.update(run_rigloop(runner, cond, job, rig, start, layers, tag=suffix,
                                regression=not job.classification))
    return nets


def _build(twins, cfg, data, seed):
    from ..network import Network, as_task_data
    t = as_task_data(data)
    return Network(twins, cfg.nodes, t.n_inputs, t.n_outputs, pi=cfg.pi_specs(), bias=cfg.bias,
                   init_gain=cfg.init_gain, readout_from=cfg.readout_from, seed=seed)


def _train_net(runner, v: str, tag: str, cond, job: Job, layers) -> tuple[Trained, str]:
    """Train (or load) the network of variant ``v``; returns it and its cache key."""
    spec = get(v)
    cfg = replace(job.config, noise=spec.noise)
    inputs = {"variant": tag, "condition": cond.name, "task": runner.keys["task"][cond.name],
              "train": _cfg_dict(cfg), "twins": _twin_keys(runner, spec.twins, layers), "seed": runner.seed,
              "code": code_digest("nado.network")}
    if spec.rigs_to_train:
        inputs["rigs"] = [without_data_keys(c.describe()) for c in job.clients]   # the rigs, not their endpoint
    d, done = runner.cache.lookup(f"train-{tag}", inputs)
    if not done:
        with _resumable(runner, d, job) as rjob:
            t = train_variant(v, rjob)
            torch.save({k: v.cpu() for k, v in t.model.state_dict().items()}, d / "weights.pt")
            write_json_atomic(d / "history.json", t.history)
            runner.cache.finish(d)
    net = _build(job.twins[spec.twins], cfg, cond.data, runner.seed)
    net.load_state_dict(torch.load(d / "weights.pt", map_location=runner.device, weights_only=True))
    return Trained(net, _read(d / "history.json"), cfg), d.name


@contextmanager
def _resumable(runner, folder: Path, job: Job):
    """``job`` whose training keeps its epoch state in ``CACHE/.resume/STAGE-KEY.pt``: a training
    stage interrupted (session over, machine rebooted) resumes at its next epoch when the same
    stage runs again (:func:`nado.network.train.fit`, "Resuming"); the file goes once the stage is
    finished. The stage's lock (:mod:`nado.pipeline.cache`) keeps one process on it."""
    path = runner.cache.root / ".resume" / f"{folder.name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        runner.log(f"  resuming {folder.name} from its last finished epoch")
    yield replace(job, config=replace(job.config, checkpoint=str(path)))
    for f in [path, *path.parent.glob(f"{path.name}.layer*")]:     # cascade: one file per layer
        f.unlink(missing_ok=True)


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
    inputs = {"variant": tag, "condition": cond.name, "task": runner.keys["task"][cond.name],
              "train": _cfg_dict(job.config), "seed": runner.seed, "code": code_digest("nado.network")}
    d, done = runner.cache.lookup(f"software-{tag}", inputs)
    if not done:
        with _resumable(runner, d, job) as rjob:
            t = train_variant(v, rjob)
            write_json_atomic(d / "metrics.json", {**measure_variant(v, t, job), "history": t.history})
            runner.cache.finish(d)
    return {**_read(d / "metrics.json"), "cached": done}


def _classification(runner, cond, clients) -> dict[str, Any]:
    sc = runner.sc
    layers = sc.network.layers
    job = _job(runner, cond, sc.train_config(progress=runner.progress), layers, clients)
    return _variants(runner, cond, job, list(sc.variants.names), layers)


# ---------------------------------------------------------------------- rig in the loop
# The rig-in-the-loop variants (kind "rig" in the registry), trained after the variants they
# start from by the one variant loop above:
#
# - ``pat``: physics-aware training from random weights (:func:`nado.network.pat.pat_train`);
# - ``pat_finetune``: a few PAT epochs from the ``sde`` network's weights (classification) or from
#   the ``cascade`` network's (regression, every depth);
# - ``refine``: twins refined where the ``sde`` network drives them, retrained, transferred again
#   (:func:`nado.network.refine.refine`, ``source="network"``); ``refine_uniform``: the same with
#   uniform random data (the control at equal instrument time).
#
# Options come from ``[variants.pat]`` (:class:`~nado.network.pat.PatOptions`) and
# ``[variants.refine]`` (:class:`~nado.network.refine.RefineOptions`). Every variant's entry gets
# ``instrument_by_stage`` (seconds the rigs reported: ``collect`` = the twins' data, shared by all
# variants; ``pat`` / ``refine`` / ``cascade``; ``transfer``) and ``instrument_total_s``, which
# :func:`nado.pipeline.report.instrument_points` turns into the report's figure of accuracy (or MSE) after transfer
# against instrument time.


def collect_seconds(runner) -> float:
    """Instrument time of the twins' data (every ``collect.*`` and ``holds.*`` stage)."""
    return float(sum(v for k, v in runner.results["instrument_s"].items()
                     if k.startswith(("collect.", "holds."))))


def _base_data(runner, layers) -> list:
    from ..data.dataset import split_dataset
    return [split_dataset(runner.datasets[k], seed=0)["train"] for k in layers]


def run_rigloop(runner, cond, job, names, start: dict[str, tuple], layers, *,
                tag: str = "", regression: bool = False) -> dict[str, Any]:
    """The rig-in-the-loop variants among ``names`` on ``job`` (a :class:`nado.network.variants.Job`
    with its rig clients); ``start`` maps the variants trained before (``"sde"``, ``"cascade"``) to
    the ``(network, config, cache key, instrument seconds it used before transfer)`` a fine-tune
    starts from. Called by the one variant loop (:func:`nado.pipeline.networks._variants`) after
    the variants they need. Returns ``{variant: entry}``."""
    from dataclasses import replace
    from ..network.pat import PatOptions, pat_diagnostics, pat_train
    from ..network.refine import RefineOptions, refine
    from ..network.variants import Trained
    clients_by_layer = list(job.clients)
    sc = runner.sc
    pat_opts = PatOptions.from_dict(getattr(sc.variants, "pat", None))
    ref_opts = RefineOptions.from_dict(getattr(sc.variants, "refine", None))
    base_s = collect_seconds(runner)
    out: dict[str, Any] = {}
    for v in names:
        origin = "cascade" if regression else "sde"
        if v in ("pat_finetune", "refine", "refine_uniform") and origin not in start:
            runner.log(f"  {v}: needs the {origin} network; add {origin!r} to [variants] list")
            continue
        name = f"{v}{tag}"
        s_net, _, s_key = start.get(origin, (None, None, None))[:3]
        vcfg = replace(variant_config(job.config, sc.train_by_variant, v), noise=True)
        opts = pat_opts if v.startswith("pat") else replace(
            ref_opts, source="uniform" if v == "refine_uniform" else "network")
        inputs = {"variant": name, "condition": cond.name, "task": runner.keys["task"][cond.name], "train": _cfg_dict(vcfg),
                  "twins": _twin_keys(runner, "sde", layers) + _twin_keys(runner, pat_opts.backward, layers),
                  "start": s_key if v != "pat" else None, "options": opts.__dict__, "seed": runner.seed,
                  "rigs": _rig_ident(runner, layers), "code": code_digest("nado.network")}
        with runner.timed(f"train.{cond.name}.{name}"):
            d, done = runner.cache.lookup(f"train-{name}", inputs)
            if not done:
                if v.startswith("pat"):
                    net, info = pat_train(s_net if v == "pat_finetune" else None,
                                          _twins(runner, opts.backward, layers), clients_by_layer, cond.data,
                                          vcfg, opts, seed=runner.seed)
                    hist = {k: info[k] for k in ("history", "instrument_s", "drives", "start_val", "kept_start")}
                    stage = {"pat": info["instrument_s"]["total"]}
                else:
                    net, info = refine(s_net, clients_by_layer, cond.data, vcfg, _base_data(runner, layers), opts,
                                       seed=runner.seed)
                    hist = {"rounds": info["rounds"], "instrument_s": info["instrument_s"]}
                    stage = {"refine": info["instrument_s"]["collect"],
                             "transfer": info["instrument_s"]["transfer"]}
                torch.save({k: t.cpu() for k, t in net.state_dict().items()}, d / "weights.pt")
                write_json_atomic(d / "history.json", {**hist, "stage_s": stage})
                runner.cache.finish(d)
            hist = _read(d / "history.json")
        if v.startswith("pat"):
            net = _build(_twins(runner, "sde", layers), vcfg, cond.data, runner.seed)
            net.load_state_dict(torch.load(d / "weights.pt", map_location=runner.device, weights_only=True))
            with runner.timed(f"transfer.{cond.name}.{name}"):
                res = _transfer(runner, v, name, cond, Trained(net, {}, vcfg), d.name, job, layers,
                                keep_outputs=regression)
            stages = {"collect": base_s, **hist["stage_s"], "transfer": float(res["instrument_s"])}
        else:   # refine's last round is its transfer (the refined twins stay in its history)
            last = hist["rounds"][-1]
            res = {"sim": last["sim"], "transfer": last["transfer"], "instrument_s": hist["stage_s"]["transfer"],
                   "rounds": [{k: r[k] for k in ("round", "transfer", "sim", "instrument_s", "sequences")}
                              for r in hist["rounds"]]}
            stages = {"collect": base_s, **hist["stage_s"]}
        if v != "pat" and origin == "cascade":      # the cascade's recording drives came first
            stages["cascade"] = float((start["cascade"][3] if len(start["cascade"]) > 3 else 0.0) or 0.0)
        # the run's total: pat's transfer is already booked by _transfer, refine's rounds are not
        runner.results["instrument_s"][f"{v}.{cond.name}{tag}"] = float(sum(
            x for k, x in stages.items() if k not in ("collect", "cascade")
            and not (k == "transfer" and v.startswith("pat"))))
        out[v] = {**res, "history": hist, "instrument_by_stage": stages,
                  "instrument_total_s": float(sum(stages.values()))}
        if v == "pat_finetune":     # why it helps or not, measured at its start (the report's table)
            d, done = runner.cache.lookup(f"patdiag-{name}", {k: inputs[k] for k in
                                                              ("twins", "start", "seed", "rigs", "code")})
            if not done:
                write_json_atomic(d / "diagnostics.json", pat_diagnostics(
                    s_net, _twins(runner, pat_opts.backward, layers), clients_by_layer, cond.data, vcfg,
                    backward_noise=pat_opts.backward_noise, seed=runner.seed))
                runner.cache.finish(d)
            out[v]["diagnostics"] = _read(d / "diagnostics.json")
            runner.results["instrument_s"][f"patdiag.{cond.name}{tag}"] = out[v]["diagnostics"]["instrument_s"]
    return out


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
