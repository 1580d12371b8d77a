"""The rig-in-the-loop variants of ``nado run``: ``pat``, ``pat_finetune``, ``refine``, ``refine_uniform``.

- ``pat``: physics-aware training from random weights (:func:`nado.network.pat.pat_train`);
- ``pat_finetune``: a few PAT epochs from the ``sde`` network's weights (classification) or from
  the ``cascade`` network's (regression, every depth);
- ``refine``: twins refined where the ``sde`` network drives them, retrained, transferred again
  (:func:`nado.network.refine.refine`, ``source="network"``); ``refine_uniform``: the same with
  uniform random data (the control at equal instrument time).

Options come from ``[variants.pat]`` (:class:`~nado.network.pat.PatOptions`) and
``[variants.refine]`` (:class:`~nado.network.refine.RefineOptions`). Every variant's entry gets
``instrument_by_stage`` (seconds the rigs reported: ``collect`` = the twins' data, shared by all
variants; ``pat`` / ``refine`` / ``cascade``; ``transfer``) and ``instrument_total_s``, which
:func:`instrument_points` turns into the report's figure of accuracy (or MSE) after transfer
against instrument time.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..io import write_json_atomic
from .cache import code_digest

RIGLOOP_VARIANTS = ("pat", "pat_finetune", "refine", "refine_uniform")


def collect_seconds(runner) -> float:
    """Instrument time of the twins' data (every ``collect.*`` and ``holds.*`` stage)."""
    return float(sum(v for k, v in runner.results["instrument_s"].items()
                     if k.startswith(("collect.", "holds."))))


def _base_data(runner, layers) -> list:
    from ..data.dataset import split_dataset
    return [split_dataset(runner.datasets[k], seed=0)["train"] for k in layers]


def run_rigloop(runner, cond, names, start: dict[str, tuple], clients_by_layer, layers, cfg, *,
                tag: str = "", regression: bool = False) -> dict[str, Any]:
    """The rig-in-the-loop variants among ``names``; ``start`` maps ``"sde"``/``"cascade"`` to the
    ``(network, config, cache key[, instrument seconds it used before transfer])`` a fine-tune
    starts from. Returns ``{variant: entry}``."""
    from dataclasses import replace
    from ..network.pat import PatOptions, pat_train
    from ..network.refine import RefineOptions, refine
    from .networks import _build, _cfg_dict, _read, _rig_ident, _transfer, _twin_keys, _twins
    sc = runner.sc
    pat_opts = PatOptions.from_dict(getattr(sc.variants, "pat", None))
    ref_opts = RefineOptions.from_dict(getattr(sc.variants, "refine", None))
    base_s = collect_seconds(runner)
    out: dict[str, Any] = {}
    for v in names:
        if v not in RIGLOOP_VARIANTS:
            continue
        origin = "cascade" if regression else "sde"
        if v in ("pat_finetune", "refine", "refine_uniform") and origin not in start:
            runner.log(f"  {v}: needs the {origin} network; add {origin!r} to [variants] list")
            continue
        name = f"{v}{tag}"
        s_net, _, s_key = start.get(origin, (None, cfg, None))[:3]
        vcfg = replace(cfg, noise=True)
        opts = pat_opts if v.startswith("pat") else replace(
            ref_opts, source="uniform" if v == "refine_uniform" else "network")
        inputs = {"variant": name, "condition": cond.name, "task": runner.keys["task"], "train": _cfg_dict(vcfg),
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
                torch.save(net.state_dict(), d / "weights.pt")
                write_json_atomic(d / "history.json", {**hist, "stage_s": stage})
                runner.cache.finish(d)
            hist = _read(d / "history.json")
        if v.startswith("pat"):
            net = _build(_twins(runner, "sde", layers), vcfg, cond.data, runner.seed)
            net.load_state_dict(torch.load(d / "weights.pt", weights_only=True))
            with runner.timed(f"transfer.{cond.name}.{name}"):
                res = _transfer(runner, name, cond, net, vcfg, d.name, clients_by_layer, layers,
                                keep_outputs=regression)
            if regression and "outputs_file" in res:
                from .networks import _per_section
                res["transfer"].update(_per_section(np.load(res["outputs_file"]), cond.data["y_test"],
                                                    int(cond.data.get("washout", 0))))
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
    return out


def instrument_points(nets: dict, collect_s: float) -> dict[str, list[tuple[float, float]]]:
    """``{variant: [(instrument seconds, metric after transfer), ...]}`` for the figure: accuracy
    (classification) or MSE t+5 (regression, else the mean MSE). NADO's own variants (sde, ode,
    cascade) count the twins' data, their recording drives and their transfer."""
    pts: dict[str, list[tuple[float, float]]] = {}

    def metric(m: dict) -> float | None:
        if not m:
            return None
        if m.get("accuracy") is not None:
            return float(m["accuracy"])
        t5 = (m.get("mse_by_horizon") or {}).get("5")
        return float(t5 if t5 is not None else m.get("mse"))

    for v, r in nets.items():
        if not isinstance(r, dict) or r.get("transfer") is None:
            continue
        if "instrument_total_s" in r:
            if r.get("rounds"):
                base = r["instrument_by_stage"]["collect"]
                acc, xs = 0.0, []
                for rd in r["rounds"]:
                    acc += float(sum(rd["instrument_s"].values()))
                    xs.append((base + acc, metric(rd["transfer"])))
                pts[v] = xs
            else:
                pts[v] = [(r["instrument_total_s"], metric(r["transfer"]))]
        elif v in ("sde", "ode", "cascade", "direct"):
            extra = float((r.get("history") or {}).get("instrument_s", 0.0)) if v == "cascade" else 0.0
            pts[v] = [(collect_s + extra + float(r.get("instrument_s", 0.0)), metric(r["transfer"]))]
    return {k: [p for p in v if p[1] is not None] for k, v in pts.items() if v}


def instrument_figure(results: dict, path) -> str | None:
    """Accuracy (or MSE t+5) after transfer against instrument time, one marker per variant
    (a line through the rounds of ``refine``); None when no rig-in-the-loop variant ran."""
    nets = results.get("networks", {})
    if not any(isinstance(r, dict) and "instrument_total_s" in r for r in nets.values()):
        return None
    from .report import _figure
    collect_s = float(sum(v for k, v in results.get("instrument_s", {}).items()
                          if k.startswith(("collect.", "holds."))))
    pts = instrument_points(nets, collect_s)
    fig = _figure(5.0, 3.4)
    ax = fig.add_subplot(111)
    regression = any("accuracy" not in ((r or {}).get("transfer") or {}) for r in nets.values()
                     if isinstance(r, dict) and r.get("transfer"))
    for v, xy in pts.items():
        x = [p[0] / 3600.0 for p in xy]
        y = [p[1] if regression else 100 * p[1] for p in xy]
        ax.plot(x, y, "o-" if len(xy) > 1 else "o", label=v)
    ax.set_xlabel("instrument time (h)")
    ax.set_ylabel("MSE t+5 after transfer" if regression else "accuracy after transfer (%)")
    if regression:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return str(path)
