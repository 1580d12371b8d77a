"""Figures of ``nado twin report`` (matplotlib Agg canvas; no pyplot, no global backend).

- :func:`repeats_figure`: like the paper's Fig. 2d. For a few held-out input
  sequences: device repeats (red), up to 100 SDE twin trajectories (black), the
  ODE prediction (orange), the input below (grey).
- :func:`error_figure`: NRMSE of the mean vs horizon per twin kind; W1 and the
  std ratio per step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import new_figure, savefig_atomic


def repeats_figure(ev: dict[str, Any], path: str | Path, *, n_examples: int = 3, channel: int = 0,
                   max_twin: int = 100) -> str:
    """Write the Fig. 2d-like PNG for ``n_examples`` held-out sequences; return its path."""
    device, inputs = ev["device"], ev["inputs"]
    n = min(n_examples, device.shape[0])
    fig = new_figure(4.0 * n, 5.0)
    gs = fig.add_gridspec(2, n, height_ratios=[3, 1], hspace=0.08)
    t = np.arange(1, device.shape[2] + 1)
    for i in range(n):
        ax = fig.add_subplot(gs[0, i])
        sde = ev["samples"].get("sde")
        if sde is not None:
            for q in range(min(max_twin, sde.shape[1])):
                ax.plot(t, sde[i, q, :, channel], color="black", lw=0.5, alpha=0.15,
                        label="SDE twin" if q == 0 else None)
        for r in range(device.shape[1]):
            ax.plot(t, device[i, r, :, channel], color="tab:red", lw=0.6, alpha=0.25,
                    label="device repeats" if r == 0 else None)
        ode = ev["samples"].get("ode")
        if ode is not None:
            ax.plot(t, ode[i, 0, :, channel], color="orange", lw=2.0, label="ODE twin")
        ax.tick_params(labelbottom=False)
        ax.set_title(f"held-out sequence {i}")
        if i == 0:
            ax.set_ylabel(f"output channel {channel}")
            ax.legend(loc="best", fontsize=7)
        axu = fig.add_subplot(gs[1, i], sharex=ax)
        axu.step(t, inputs[i, :, 0], where="mid", color="grey")
        axu.set_xlabel("step")
        if i == 0:
            axu.set_ylabel("input")
    savefig_atomic(fig, path)
    return str(path)


def error_figure(ev: dict[str, Any], path: str | Path) -> str:
    """Write NRMSE vs horizon, W1 per step and std ratio per step; return the path."""
    fig = new_figure(12.0, 3.6)
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    colors = {"ode": "orange", "sde": "black"}
    for kind, m in ev["metrics"].items():
        hs = [int(h) for h in m["nrmse_by_horizon"]]
        axes[0].plot(hs, list(m["nrmse_by_horizon"].values()), "o-", color=colors[kind],
                     label=f"{kind} (mean of repeats)")
        dyn = ev["dynamics"].get(kind)
        if dyn:
            axes[0].plot([int(h) for h in dyn], list(dyn.values()), "s--", color=colors[kind],
                         alpha=0.6, label=f"{kind} (single trajectories)")
        steps = np.arange(1, len(ev["per_step"][kind]["w1"]) + 1)
        axes[1].plot(steps, ev["per_step"][kind]["w1"], color=colors[kind], label=kind)
        axes[2].plot(steps, ev["per_step"][kind]["std_ratio"], color=colors[kind], label=kind)
    axes[0].axhline(ev["noise_floor"], color="grey", ls=":", lw=1, label="noise floor (single)")
    axes[0].set(xlabel="horizon (steps)", ylabel="NRMSE", title="error vs horizon")
    axes[1].set(xlabel="step", ylabel="W1 / sigma", title="Wasserstein-1 per step")
    axes[2].axhline(1.0, color="grey", ls=":", lw=1)
    axes[2].set(xlabel="step", ylabel="std twin / std device", title="std ratio per step")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    savefig_atomic(fig, path)
    return str(path)
