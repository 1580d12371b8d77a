"""The report of a run: ``report.md`` with tables, and PNG figures, beside ``results.json``.

Figures (matplotlib's Agg canvas; no pyplot):

- ``fig_twin_repeats_KIND.png`` / ``fig_twin_error_KIND.png``: twin vs device (the
  paper's Fig. 2d), copied from the twin report (:mod:`nado.twin.report`);
- ``fig_accuracy.png``: accuracy in simulation vs after transfer per variant (Fig. 3c);
- ``fig_mse_horizon.png``: MSE vs prediction horizon, direct vs cascade, per depth (Fig. 4b);
- ``fig_prediction.png``: prediction vs truth at t+5 on a test section (Fig. 4c/d);
- ``fig_training.png``: training curves (loss and validation metric per epoch; a triangle marks
  an epoch after which ``train.plateau_factor`` cut the learning rate).

``report.md`` puts the paper's reference numbers (physical devices) beside ours.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..io import new_figure, savefig_atomic, write_bytes_atomic

REFERENCE = {
    "digits": ("Partially observable MNIST, 2 x 200 NRA, transferred accuracy: 96.8 % (25 % "
               "visibility) / 96.0 % (20 %); static MLP 90.0 / 88.0 %; leaky-integrator MLP "
               "96.9 / 96.7 %."),
    "mackey_glass": ("Mackey-Glass t+5, 3-layer ASVI/NRA cascade after transfer: MSE 2.2e-3 "
                     "(software leaky integrators 1e-3; reservoir computing 3.86e-2; multilayer "
                     "PNNs without gradients about 1e-2)."),
    "emg": "EMG gestures (Ninapro DB1 B): error about 30 % below the single-layer reservoir baseline.",
}
PAPER_ACCURACY = {"25": {"sde": 96.8, "mlp": 90.0, "leaky": 96.9},
                  "20": {"sde": 96.0, "mlp": 88.0, "leaky": 96.7}}
COLORS = {"sim": "#8fb3d9", "transfer": "#1f4e79"}


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, float)):
        return f"{100 * v:.1f}" if pct else f"{v:.3g}"
    return str(v)


# ---------------------------------------------------------------------- figures
def accuracy_figure(results: dict, path: Path) -> str | None:
    conds = {n: c["networks"] for n, c in results["conditions"].items()
             if any((v.get("sim") or {}).get("accuracy") is not None for v in c.get("networks", {}).values())}
    if not conds:
        return None
    fig = new_figure(3.2 * len(conds) + 1.5, 3.4)
    for i, (name, nets) in enumerate(conds.items()):
        ax = fig.add_subplot(1, len(conds), i + 1)
        names = list(nets)
        x = np.arange(len(names))
        for j, col in enumerate(("sim", "transfer")):
            vals = [100 * ((nets[n].get(col) or {}).get("accuracy") or np.nan) for n in names]
            errs = [100 * ((nets[n].get(col) or {}).get("accuracy_std") or 0.0) for n in names]
            ax.bar(x + (j - 0.5) * 0.38, vals, 0.38, yerr=errs, color=COLORS[col],
                   label="simulation (twins)" if col == "sim" else "after transfer (rigs)")
        ax.set_xticks(x, names)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(name)
        lo = np.nanmin([100 * ((nets[n].get(c) or {}).get("accuracy") or np.nan)
                        for n in names for c in ("sim", "transfer")])
        ax.set_ylim(max(0.0, lo - 10), 100)
        if i == 0:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    savefig_atomic(fig, path)
    return str(path)


def mse_horizon_figure(results: dict, path: Path) -> str | None:
    cond = next((c for c in results["conditions"].values() if c.get("by_depth")), None)
    if cond is None:
        return None
    fig = new_figure(5.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    markers = {"direct": "o", "cascade": "s", "sde": "^", "ode": "v"}
    palette = ("#c0392b", "#1f4e79", "#27ae60", "#8e44ad")  # the paper: L2 red, L3 blue
    for di, (depth, nets) in enumerate(cond["by_depth"].items()):
        for v, r in nets.items():
            mbh = (r.get("transfer") or {}).get("mse_by_horizon")
            if not mbh:
                continue
            h = [int(k) for k in mbh]
            ax.errorbar(h, list(mbh.values()), yerr=r["transfer"].get("mse_by_horizon_std"),
                        marker=markers.get(v, "x"), capsize=2, color=palette[di % len(palette)],
                        ls="-" if v == "cascade" else "--", alpha=1.0 if v == "cascade" else 0.55,
                        label=f"{depth} {v}")
    ax.set_yscale("log")
    ax.set_xlabel("steps ahead")
    ax.set_ylabel("MSE after transfer")
    ax.legend(fontsize=7)
    fig.tight_layout()
    savefig_atomic(fig, path)
    return str(path)


def prediction_figure(results: dict, path: Path, horizon: int = 5) -> str | None:
    cond = next((c for c in results["conditions"].values() if c.get("by_depth")), None)
    if cond is None:
        return None
    rows = [(d, v, r) for d, nets in cond["by_depth"].items() for v, r in nets.items() if r.get("outputs_file")]
    if not rows or "targets_file" not in cond:
        return None
    mean, std = cond["info"].get("scale_mean", 0.0), cond["info"].get("scale_std", 1.0)
    y = np.load(cond["targets_file"]) * std + mean
    horizons = cond["info"]["horizons"]
    k = horizons.index(horizon) if horizon in horizons else 0
    fig = new_figure(7.0, 1.6 * len(rows) + 0.6)
    for i, (d, v, r) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        o = np.load(r["outputs_file"]) * std + mean
        t = np.arange(y.shape[1])
        ax.plot(t, y[0, :, k], "o", ms=2.5, mfc="white", mec="k", label="truth")
        ax.plot(t, o[0, :, k], "-", color="#c0392b", lw=1.2, label="transferred network")
        ax.fill_between(t, y[0, :, k], o[0, :, k], color="#f5b7b1", alpha=0.6)
        ax.set_ylabel(f"{d} {v}", fontsize=8)
        if i == 0:
            ax.set_title(f"t+{horizons[k]} prediction, test section 1")
            ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("step")
    fig.tight_layout()
    savefig_atomic(fig, path)
    return str(path)


def training_figure(results: dict, path: Path) -> str | None:
    curves = []
    for cname, c in results["conditions"].items():
        groups = c.get("by_depth") or {"": c.get("networks", {})}
        for depth, nets in groups.items():
            for v, r in nets.items():
                hs = [r["history"]] if "loss" in (r.get("history") or {}) else \
                    (r.get("history") or {}).get("histories", [])
                for j, h in enumerate(hs):
                    if isinstance(h, dict) and h.get("loss"):
                        tag = f"{cname} {depth} {v}" + (f" layer {j + 1}" if len(hs) > 1 else "")
                        curves.append((tag.strip(), h))
    if not curves:
        return None
    fig = new_figure(9.0, 3.4)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for tag, h in curves:
        line, = ax1.plot(h["loss"], label=tag)
        ax2.plot(h["val"], label=tag)
        cuts = [e for e in h.get("plateaus") or [] if e < len(h["loss"])]
        if cuts:                        # train.plateau_factor cut the rate after these epochs
            ax1.plot(cuts, [h["loss"][e] for e in cuts], "v", color=line.get_color(), ms=7,
                     label=f"{tag}: learning rate cut")
    if any(h.get("plateaus") for _, h in curves):
        ax1.legend(fontsize=6)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(f"validation {curves[0][1].get('val_metric', '')}")
    ax2.legend(fontsize=6)
    fig.tight_layout()
    savefig_atomic(fig, path)
    return str(path)


# ---------------------------------------------------------------------- markdown
def _network_table(nets: dict, classification: bool) -> list[str]:
    if classification:
        lines = ["| variant | sim accuracy (%) | transfer accuracy (%) | sim - transfer (points) |",
                 "|---|---|---|---|"]
        for v, r in nets.items():
            s, t = (r.get("sim") or {}).get("accuracy"), (r.get("transfer") or {}).get("accuracy")
            gap = None if s is None or t is None else 100 * (s - t)
            lines.append(f"| {v} | {_fmt(s, True)} | {_fmt(t, True)} | {_fmt(gap)} |")
        return lines
    lines = ["| variant | sim MSE | sim NMSE | transfer MSE | transfer NMSE | transfer MSE t+5 |",
             "|---|---|---|---|---|---|"]
    for v, r in nets.items():
        s, t = r.get("sim") or {}, r.get("transfer") or {}
        t5 = (t.get("mse_by_horizon") or {}).get("5")
        lines.append(f"| {v} | {_fmt(s.get('mse'))} | {_fmt(s.get('nmse'))} | {_fmt(t.get('mse'))} "
                     f"| {_fmt(t.get('nmse'))} | {_fmt(t5)} |")
    return lines


def markdown(results: dict, figures: dict[str, str]) -> str:
    sc = results["scenario"]
    kind = sc["task"]["kind"]
    family = "digits" if kind in ("digits", "mnist", "mnist5k") else kind
    classification = family != "mackey_glass"
    out = [f"# nado run: {sc['run']['name']}", "",
           f"Task `{kind}`, network {' -> '.join(sc['network']['layers'])} "
           f"({', '.join(str(n) for n in sc['network']['nodes'])} nodes), seed {sc['run']['seed']}"
           + (", reduced budget (--quick)" if results.get("quick") else "") + ".", "",
           "## Rigs", "", "| rig | kind | SNR (median over channels) | repeats' 5-95 % width / response range "
           "(mean, p90) | bimodal repeats | active range | instrument time (s) |",
           "|---|---|---|---|---|---|---|"]
    for k, r in results["rigs"].items():
        ar = r.get("active_range") or [[None], [None]]
        sd = r.get("snr_detail") or {}
        out.append(f"| {k} | {r.get('kind', k)} | {_fmt(r.get('snr'))} | {_fmt(sd.get('width_of_range'))}, "
                   f"{_fmt(sd.get('width_of_range_p90'))} | {_fmt(sd.get('bimodal_fraction'))} | "
                   f"{_fmt(ar[0][0])} .. {_fmt(ar[1][0])} "
                   f"{r['describe'].get('input', {}).get('units', '')} | {_fmt(r.get('instrument_s'))} |")
    out += ["", "Spread statistics of the repeats set (`nado.data.snr`): the paper's Fig. 2b/2d show real "
            "NRA repeats spreading over much of the response range, with noise-induced bifurcations.", ""]
    out += ["", "## Twins (held-out repeats)", "",
            "| kind | twin | mean error | std ratio | autocov error | W1 |", "|---|---|---|---|---|---|"]
    for k, m in (results["twins"].get("by_kind") or {}).items():
        for t in ("ode", "sde"):
            x = m.get(t, {})
            out.append(f"| {k} | {t} | {_fmt(x.get('mean_error'))} | {_fmt(x.get('std_ratio'))} | "
                       f"{_fmt(x.get('autocov_error'))} | {_fmt(x.get('w1'))} |")
    for cname, c in results["conditions"].items():
        out += ["", f"## Networks: {cname}", ""]
        if c.get("by_depth"):
            for depth, nets in c["by_depth"].items():
                out += [f"### {depth}", ""] + _network_table(nets, classification) + [""]
        else:
            out += _network_table(c.get("networks", {}), classification)
    out += _pat_diagnostics(results)
    out += ["", "## The paper's numbers (physical devices)", "", REFERENCE[family], ""]
    if family == "digits":
        out += ["| visibility | variant | paper (%) | ours, transfer (%) | ours, sim (%) |", "|---|---|---|---|---|"]
        for cname, c in results["conditions"].items():
            vis = f"{c['info'].get('visibility', 0):g}"
            for v, ref in PAPER_ACCURACY.get(vis, {}).items():
                r = c.get("networks", {}).get(v, {})
                out.append(f"| {vis} % | {v} | {ref} | {_fmt((r.get('transfer') or {}).get('accuracy'), True)} "
                           f"| {_fmt((r.get('sim') or {}).get('accuracy'), True)} |")
    if family == "emg":
        nets = results.get("networks", {})
        rc = (nets.get("rc1") or nets.get("rc") or {}).get("transfer") or {}
        best = (nets.get("sde") or {}).get("transfer") or {}
        if rc.get("accuracy") is not None and best.get("accuracy") is not None:
            e_rc, e_opt = 1 - rc["accuracy"], 1 - best["accuracy"]
            rel = (e_rc - e_opt) / e_rc if e_rc > 0 else 0.0
            word = "lower" if rel >= 0 else "higher"
            out.append(f"Ours: error {100 * e_opt:.1f} % (SDE-trained) vs {100 * e_rc:.1f} % (RC), after "
                       f"transfer: {100 * abs(rel):.0f} % {word} (paper: about 30 % lower).")
    if family == "mackey_glass":
        c = results.get("networks", {}).get("cascade", {}).get("transfer") or {}
        t5 = (c.get("mse_by_horizon") or {}).get("5")
        out.append(f"Ours: deepest cascade after transfer, MSE t+5 = {_fmt(t5)} (paper 2.2e-3).")
    out += ["", "## Figures", ""] + [f"![{n}]({Path(p).name})" for n, p in figures.items()]
    t = results["timing"]
    out += ["", "## Time", "", f"Wall time {t.get('total', 0):.1f} s; instrument time "
            f"{results['instrument_s'].get('total', 0):.1f} s. Cache: {len(results['cache'].get('hits', []))} "
            f"stages reused, {len(results['cache'].get('misses', []))} computed"
            + (f" ({len(results['cache']['computed_in_workers'])} of them by {results['jobs']} "
               "worker processes, `[run] jobs`)"
               if results["cache"].get("computed_in_workers") else "") + ".", "",
            "| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in t.items()]
    out += _stage_seconds(results["cache"])
    v = results["versions"]
    out += ["", f"Versions: {', '.join(f'{k} {x}' for k, x in v.items())}.", ""]
    return "\n".join(out)


def _stage_seconds(cache: dict) -> list[str]:
    """The report's table of what each cached stage took when it was computed (reused stages
    too: a report assembled from a cache still shows the run's cost)."""
    seconds = cache.get("seconds") or {}
    if not seconds:
        return []
    reused = set(cache.get("hits", []))
    known = [v for v in seconds.values() if v is not None]
    out = ["", f"Each stage's compute time when it ran (the stage cache's record; {len(known)} of "
           f"{len(seconds)} recorded, {sum(known):.0f} s in all - more than the wall time when "
           "stages ran side by side):", "", "| stage (cache folder) | computed in (s) | this run |",
           "|---|---|---|"]
    for name, v in seconds.items():
        out.append(f"| {name} | {'-' if v is None else f'{v:.1f}'} | "
                   f"{'reused' if name in reused else 'computed'} |")
    return out


def write_report(run_dir: str | Path, results: dict, twin_figures: dict[str, str]) -> dict[str, str]:
    """Write figures and ``report.md`` into ``run_dir``; return ``{name: path}`` of what was written."""
    run_dir = Path(run_dir)
    files: dict[str, str] = {}
    for name, src in twin_figures.items():
        dst = run_dir / f"{name}.png"
        shutil.copyfile(src, dst)
        files[name] = str(dst)
    for name, fn in (("fig_accuracy", accuracy_figure), ("fig_mse_horizon", mse_horizon_figure),
                     ("fig_prediction", prediction_figure), ("fig_training", training_figure),
                     ("fig_instrument_time", instrument_figure)):
        p = fn(results, run_dir / f"{name}.png")
        if p:
            files[name] = p
    write_bytes_atomic(run_dir / "report.md", markdown(results, files).encode())
    files["report"] = str(run_dir / "report.md")
    return files


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


def _pat_diagnostics(results: dict) -> list[str]:
    """The table behind ``pat_finetune``'s result (:func:`nado.network.pat.pat_diagnostics` at its
    starting weights, one training batch): how far the gradient PAT follows is from the twin-only
    one, how noisy the measured forward pass makes it, and how far the twin is from the rig."""
    rows = []
    for cname, c in results["conditions"].items():
        by_depth = c.get("by_depth") or {}     # regression: every depth (networks = the deepest)
        nets = ({f"{k}.{d}": n for d, ns in by_depth.items() for k, n in ns.items()} if by_depth
                else c.get("networks", {}))
        for v, n in nets.items():
            dg = (n or {}).get("diagnostics")
            if dg:
                rows.append(f"| {cname} | {v} | {_fmt(dg['cos_pat_twin'])} | {_fmt(dg['cos_pat_pat'])} | "
                            f"{_fmt(dg['cos_twin_twin'])} | {', '.join(_fmt(x) for x in dg['forward_nrmse'])} | "
                            f"{', '.join(_fmt(x) for x in dg['rig_repeat_nrmse'])} | {_slopes(dg)} |")
    if not rows:
        return []
    return ["", "### Physics-aware training: what its gradient sees (measured at its start)", "",
            "Cosines between gradients on one training batch: PAT vs twin-only (NADO's); PAT vs PAT with "
            "other drive-noise seeds (1 = a noise-free measured forward pass); twin vs twin with other "
            "noise draws (the twin's own gradient noise, for scale). NRMSE per layer, over the rig "
            "activities' std: twin vs rig along the same measured inputs, and the rig against itself "
            "(two measurements of the same inputs). PAT can only help where the twin is further from "
            "the rig than the rig is from itself. Rig slope: the loss measured on the rigs a small step "
            "either side along each direction (same drive seeds both sides), over the direction's own "
            "gradient norm, for the PAT gradient / the twin-only gradient / a random direction: 1 = "
            "that gradient is the rig's, 0 = orthogonal to it, < 0 = uphill on the rig.", "",
            "| condition | variant | cos(PAT, twin) | cos(PAT, PAT') | cos(twin, twin') | twin vs rig NRMSE "
            "per layer | rig vs rig NRMSE per layer | rig slope: PAT / twin / random |",
            "|---|---|---|---|---|---|---|---|", *rows]


def _slopes(dg: dict) -> str:
    s = dg.get("rig_slope")            # absent in diagnostics made before it was measured
    return " / ".join(_fmt(s[k]) for k in ("pat", "twin", "random")) if s else "-"


def instrument_figure(results: dict, path) -> str | None:
    """Accuracy (or MSE t+5) after transfer against instrument time, one marker per variant
    (a line through the rounds of ``refine``); None when no rig-in-the-loop variant ran."""
    nets = results.get("networks", {})
    if not any(isinstance(r, dict) and "instrument_total_s" in r for r in nets.values()):
        return None
    collect_s = float(sum(v for k, v in results.get("instrument_s", {}).items()
                          if k.startswith(("collect.", "holds."))))
    pts = instrument_points(nets, collect_s)
    fig = new_figure(5.0, 3.4)
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
    savefig_atomic(fig, path)
    return str(path)
