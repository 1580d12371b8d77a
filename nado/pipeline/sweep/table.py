"""The table and figures of a sweep: one row per trial, the swept keys, then the metrics.

Columns: ``trial``, each swept key, ``seed``, ``status`` (done | failed | pending),
``error``, ``seconds`` (the trial's run time), then the metrics flattened from the
trial's ``results.json``: every number under ``networks.VARIANT.sim`` and
``networks.VARIANT.transfer`` (``networks.sde.transfer.accuracy``), under ``twins``
(``twins.sde.w1``, ``twins.ode.nrmse_by_horizon.5``, ``twins.by_kind.nra...``) and
each rig's ``snr`` (``rigs.nra.snr``); ``twins.by_kind`` only for kinds other than the
primary one (whose metrics stand under ``twins.ode``/``twins.sde``). ``table.csv`` has
every column; ``table.md`` the headline metrics (below) and the SNRs.

Figures (``fig_KEY.png``, one per swept key): a panel per headline metric (the
network metrics, and the twins' ``mean_error``, ``std_ratio``, ``autocov_error``
and ``w1``), the metric against the key's values: the seeds' values as dots, their
mean as a line (one line per combination of the other swept keys) with the spread
over seeds (min..max) as a band. Non-numeric values (lists, strings) are placed
at even positions and labelled.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ...io import new_figure, savefig_atomic, write_bytes_atomic

HEADLINE_TWIN = ("mean_error", "std_ratio", "autocov_error", "w1")


def _numbers(prefix: str, obj: Any, out: dict[str, float]) -> None:
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        out[prefix] = float(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _numbers(f"{prefix}.{k}", v, out)


def flatten_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a results.json (see the module docstring), by dotted name."""
    out: dict[str, float] = {}
    for variant, r in (results.get("networks") or {}).items():
        if isinstance(r, dict):
            for col in ("sim", "transfer"):
                _numbers(f"networks.{variant}.{col}", r.get(col), out)
    twins = dict(results.get("twins") or {})
    primary = {(twins.get(k) or {}).get("kind") for k in ("ode", "sde")} if isinstance(twins, dict) else set()
    by_kind = {k: v for k, v in (twins.pop("by_kind", None) or {}).items() if k not in primary}
    if by_kind:   # the primary kind's metrics already stand under twins.ode / twins.sde
        twins["by_kind"] = by_kind
    _numbers("twins", twins, out)
    for kind, r in (results.get("rigs") or {}).items():
        if isinstance(r, dict) and "snr" in r:
            _numbers(f"rigs.{kind}.snr", r["snr"], out)
    return out


def headline(metric: str) -> bool:
    parts = metric.split(".")
    if parts[0] == "networks":
        return True
    return parts[0] == "twins" and len(parts) == 3 and parts[2] in HEADLINE_TWIN


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


def collect_rows(sweep, failures: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """``(columns, rows, metric names)`` for the trials of ``sweep`` (a :class:`nado.pipeline.sweep.grid.Sweep`)."""
    keys = list(sweep.trials[0].keys) if sweep.trials else []
    rows, metrics = [], {}
    for t in sweep.trials:
        d = sweep.trial_dir(t)
        row: dict[str, Any] = {"trial": t.name, **t.keys, "seed": t.seed}
        state = sweep.state(t, failures)
        row["status"] = state
        row["error"] = failures.get(t.name, {}).get("error") if state != "done" else None
        if state == "done":
            res = json.loads((d / "results.json").read_text())
            row["seconds"] = (res.get("timing") or {}).get("total")
            m = flatten_metrics(res)
            row.update(m)
            metrics.update(dict.fromkeys(m))
        else:
            row["seconds"] = failures.get(t.name, {}).get("seconds")
        rows.append(row)
    names = sorted(metrics)
    return ["trial", *keys, "seed", "status", "error", "seconds", *names], rows, names


def write_table(sweep, failures: dict[str, Any]) -> dict[str, Any]:
    """Write ``table.csv``, ``table.md`` and ``fig_KEY.png`` into the sweep folder; return their paths."""
    columns, rows, metrics = collect_rows(sweep, failures)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    write_bytes_atomic(sweep.out / "table.csv", buf.getvalue().encode())
    short = [c for c in columns if c not in metrics or headline(c) or c.endswith(".snr")]
    md = ["| " + " | ".join(short) + " |", "|" + "---|" * len(short)]
    for r in rows:
        md.append("| " + " | ".join(_cell(r.get(c)).replace("|", "\\|").replace("\n", " ")
                                    for c in short) + " |")
    write_bytes_atomic(sweep.out / "table.md", ("\n".join(md) + "\n").encode())
    figures = write_figures(sweep, rows, [m for m in metrics if headline(m)])
    return {"csv": str(sweep.out / "table.csv"), "md": str(sweep.out / "table.md"),
            "figures": figures, "rows": len(rows)}


def write_figures(sweep, rows: list[dict[str, Any]], metrics: list[str]) -> list[str]:
    """One ``fig_KEY.png`` per swept key (see the module docstring); returns the paths."""
    keys = list(sweep.trials[0].keys) if sweep.trials else []
    done = [r for r in rows if r["status"] == "done"]
    if not keys or not done or not metrics:
        return []
    paths = []
    for key in keys:
        values = sweep.spec.grid[key]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        xs = {json.dumps(v): (float(v) if numeric else i) for i, v in enumerate(values)}
        others = [k for k in keys if k != key]
        n = len(metrics)
        ncol = min(3, n)
        nrow = math.ceil(n / ncol)
        fig = new_figure(4.2 * ncol, 3.2 * nrow)
        axes = fig.subplots(nrow, ncol, squeeze=False)
        for ax, m in zip(axes.flat, metrics):
            groups: dict[str, dict[float, list[float]]] = {}
            for r in done:
                if m not in r:
                    continue
                label = ", ".join(f"{o}={_cell(r[o])}" for o in others) or m.split(".")[-1]
                groups.setdefault(label, {}).setdefault(xs[json.dumps(r[key])], []).append(r[m])
            for label, pts in groups.items():
                x = sorted(pts)
                mean = [sum(pts[v]) / len(pts[v]) for v in x]
                line, = ax.plot(x, mean, marker="o", label=label)
                ax.fill_between(x, [min(pts[v]) for v in x], [max(pts[v]) for v in x],
                                color=line.get_color(), alpha=0.2, linewidth=0)
                for v in x:
                    ax.plot([v] * len(pts[v]), pts[v], ".", color=line.get_color(), alpha=0.6)
            ax.set_title(m, fontsize=8)
            ax.set_xlabel(key, fontsize=8)
            if not numeric:
                ax.set_xticks(list(xs.values()), [_cell(v) for v in values], fontsize=7)
            ax.tick_params(labelsize=7)
            if others and groups:
                ax.legend(fontsize=6)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.suptitle(f"{Path(sweep.spec.scenario).name}: metrics vs {key} (band: min..max over seeds)",
                     fontsize=9)
        fig.tight_layout()
        path = sweep.out / f"fig_{key.replace('.', '_')}.png"
        savefig_atomic(fig, path, dpi=90)
        paths.append(str(path))
    return paths
