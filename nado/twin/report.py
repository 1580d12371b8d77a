"""Validate twins on held-out device data: ``nado twin report`` (JSON and PNG figures).

:func:`twin_report` takes twins by kind (``{"ode": Twin, "sde": Twin}``, either
may be missing) and a :class:`nado.data.dataset.Dataset`; it holds out the test split
(:func:`nado.data.dataset.split_dataset` with ``split_seed``, the split ``nado fit``
never trains on) and returns ``{kind: {mean_error, std_ratio, autocov_error, w1,
nrmse_by_horizon}}`` (definitions in :mod:`nado.twin.metrics`), the objects a
scenario run puts under ``twins`` in ``results.json``.

On every held-out repeated sequence (M sequences, R device repeats):
- the SDE twin runs ``samples`` (default 100) trajectories, each starting from one
  of the device's measured initial observables (cycled), with its own noise;
- the ODE twin runs once from the mean initial observable (no spread).
``nrmse_by_horizon`` compares the twin's mean trajectory with the device's mean
over repeats (noise averaged out), normalised by the signal std. The details
(:func:`report_details`) add the same NRMSE on held-out *dynamics* sequences,
single noisy trajectories, where device noise sets a floor (also reported).

:func:`write_report` writes ``twin_report.json`` (exactly the kinds' objects),
``twin_report_details.json``, ``fig_twin_repeats.png`` (like the paper's Fig. 2d:
device repeats red, 100 SDE trajectories black, ODE prediction orange) and
``fig_twin_error.png`` (NRMSE vs horizon; W1 and std ratio per step). Figures use
matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.dataset import Dataset, split_dataset
from ..device import generator, to_device
from ..errors import ConfigError, DatasetError
from ..io import write_json_atomic
from .metrics import (channel_scales, default_horizons, nrmse_by_horizon, per_step,
                     repeat_metrics)

KEYS = ("mean_error", "std_ratio", "autocov_error", "w1", "nrmse_by_horizon")
_MAX_BATCH = 20000


def simulate_repeats(twin, inputs: np.ndarray, initial: np.ndarray, *, samples: int = 100,
                     seed: int = 0) -> np.ndarray:
    """Twin trajectories for repeated sequences: inputs (M, T, n_in), device initial (M, R, C).

    SDE: (M, samples, T, C), sample q of sequence m starts at ``initial[m, q % R]``.
    ODE: (M, 1, T, C) from the mean initial observable.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    initial = np.asarray(initial, dtype=np.float32)
    M, T = inputs.shape[:2]
    if twin.config.kind == "ode":
        s, x0, Q = inputs, initial.mean(axis=1), 1
    else:
        Q = int(samples)
        idx = np.arange(Q) % initial.shape[1]
        s = np.repeat(inputs, Q, axis=0)
        x0 = initial[:, idx].reshape(M * Q, -1)
    return _simulate(twin, s, x0, seed=seed, noise=True).reshape(M, Q, T, -1)


def _simulate(twin, s: np.ndarray, x0: np.ndarray, *, seed: int, noise: bool) -> np.ndarray:
    device = twin.obs_mean.device
    gen = generator(device, seed)
    out = []
    with torch.no_grad():
        for i in range(0, len(s), _MAX_BATCH):
            out.append(twin.simulate(to_device(s[i:i + _MAX_BATCH], device),
                                     to_device(x0[i:i + _MAX_BATCH], device),
                                     noise=noise, generator=gen).double().cpu().numpy())
    return np.concatenate(out, axis=0)


def _check(twins: dict[str, Any], test: Dataset) -> None:
    if not twins:
        raise ConfigError("twin_report needs at least one twin: {'ode': ..., 'sde': ...}")
    for kind, twin in twins.items():
        if kind not in ("ode", "sde") or twin.config.kind != kind:
            raise ConfigError(f"twin given as {kind!r} is a {twin.config.kind!r} twin; pass "
                              "{'ode': ode_twin, 'sde': sde_twin}")
        if (twin.config.n_in, twin.config.n_obs) != (test.n_in, test.n_out):
            raise ConfigError(f"the {kind} twin takes {twin.config.n_in} inputs and gives "
                              f"{twin.config.n_obs} observables; the dataset has {test.n_in} and "
                              f"{test.n_out}: was it fitted on another rig?")
    if test.repeats_outputs.shape[0] == 0 or test.repeats_outputs.shape[1] < 2:
        raise DatasetError("the held-out split has no repeated sequences (need M >= 3 sequences with "
                           "R >= 2 repeats); collect with --repeats M R")


def evaluate(twins: dict[str, Any], dataset: Dataset, *, split_seed: int = 0, samples: int = 100,
             seed: int = 0, horizons: list[int] | None = None,
             max_sequences: int | None = None) -> dict[str, Any]:
    """Everything the report needs: metrics per kind plus arrays for details and figures."""
    test = split_dataset(dataset, seed=split_seed)["test"]
    _check(twins, test)
    M = test.repeats_inputs.shape[0] if max_sequences is None else min(max_sequences,
                                                                        test.repeats_inputs.shape[0])
    inputs, device = test.repeats_inputs[:M], test.repeats_outputs[:M]
    initial = test.repeats_initial[:M]
    T = device.shape[2]
    horizons = default_horizons(T) if horizons is None else [int(h) for h in horizons]
    sigma, signal = channel_scales(device)
    out: dict[str, Any] = {"metrics": {}, "samples": {}, "per_step": {}, "dynamics": {},
                           "inputs": inputs, "device": device, "horizons": horizons,
                           "sigma": sigma, "signal": signal, "n_sequences": M}
    for kind in ("ode", "sde"):
        if kind not in twins:
            continue
        twin = twins[kind]
        sim = simulate_repeats(twin, inputs, initial, samples=samples, seed=seed)
        m = repeat_metrics(device, sim, scale=sigma)
        m["nrmse_by_horizon"] = nrmse_by_horizon(sim.mean(axis=1), device.mean(axis=1), horizons, signal)
        out["metrics"][kind] = {k: m[k] for k in KEYS}
        out["samples"][kind] = sim
        out["per_step"][kind] = per_step(device, sim, sigma)
        if test.dynamics_inputs.shape[0]:
            pred = _simulate(twin, test.dynamics_inputs.astype(np.float32),
                             test.dynamics_initial.astype(np.float32), seed=seed, noise=False)
            dyn_scale = test.dynamics_outputs.reshape(-1, test.n_out).std(axis=0)
            out["dynamics"][kind] = nrmse_by_horizon(pred, test.dynamics_outputs, horizons,
                                                     np.where(dyn_scale > 0, dyn_scale, 1.0))
    noise = np.sqrt(device.var(axis=1, ddof=1).mean(axis=(0, 1)))
    # a perfect mean predictor still misses single noisy trajectories by noise / total std
    out["noise_floor"] = float((noise / np.sqrt(noise ** 2 + signal ** 2)).mean())
    out["snr"] = float(np.median(signal / np.where(noise > 0, noise, np.inf)))
    return out


def twin_report(twins: dict[str, Any], dataset: Dataset, **kw) -> dict[str, dict[str, Any]]:
    """``{kind: {mean_error, std_ratio, autocov_error, w1, nrmse_by_horizon}}``; see :func:`evaluate`."""
    return evaluate(twins, dataset, **kw)["metrics"]


def report_details(ev: dict[str, Any]) -> dict[str, Any]:
    """Plain-dict extras: horizons, sequence count, SNR, dynamics-set NRMSE, per-step curves."""
    return {"n_sequences": ev["n_sequences"], "horizons": ev["horizons"], "snr": ev["snr"],
            "dynamics_nrmse_by_horizon": ev["dynamics"],
            "dynamics_noise_floor": ev["noise_floor"],
            "per_step": {k: {n: v.tolist() for n, v in d.items()} for k, d in ev["per_step"].items()}}


def write_report(twins: dict[str, Any], dataset: Dataset, out_dir: str | Path, *, figures: bool = True,
                 n_examples: int = 3, **kw) -> dict[str, Any]:
    """Write JSON and figures into ``out_dir``; return ``{"twins": metrics, "files": {...}}``."""
    out_dir = Path(out_dir)
    ev = evaluate(twins, dataset, **kw)
    files = {"json": str(out_dir / "twin_report.json"),
             "details": str(out_dir / "twin_report_details.json")}
    write_json_atomic(files["json"], ev["metrics"])
    write_json_atomic(files["details"], report_details(ev))
    if figures:
        from .figures import error_figure, repeats_figure
        files["repeats_png"] = repeats_figure(ev, out_dir / "fig_twin_repeats.png", n_examples=n_examples)
        files["error_png"] = error_figure(ev, out_dir / "fig_twin_error.png")
    return {"twins": ev["metrics"], "files": files}
