"""How faithful a twin is: the one set of metrics comparing twin trajectories with device repeats.

The same definitions serve the twin report (``results.json``'s ``twins.KIND``), ``nado twin``,
and the SDE fit's model selection (:func:`nado.twin.fit_sde.fit_sde` keeps the twin of lowest
``w1`` on held-out repeats). numpy inside; torch tensors are accepted (read on the CPU).

Arrays: device repeats ``device`` (M, R, T, C) and twin samples ``twin``
(M, Q, T, C) driven by the same M input sequences; ``Q = 1`` for a
deterministic (ODE) twin. Channel scales keep every number dimensionless:

- ``scale`` sigma_c: std of the device outputs over sequences, repeats, steps;
- ``signal`` s_c: std over sequences and steps of the device mean over repeats
  (the "signal" of the SNR in DESIGN.md).

Metrics (each averaged over sequences, steps and channels):

- ``mean_error``: ``mean |mean_q twin - mean_r device| / sigma_c``;
- ``std_ratio``: per step and channel, ``sqrt(mean_m var_q twin) /
  sqrt(mean_m var_r device)`` (variances pooled over sequences), averaged over
  steps and channels; 0 for a deterministic twin, 1 for a perfect one;
- ``autocov_error``: the normalised autocovariance of the residuals around the
  per-step mean, ``acf(k) = sum e(t) e(t+k) / sqrt(sum e(t)^2 sum e(t+k)^2)``
  pooled over sequences and samples, for lags ``k = 1..T-1``; the error is
  ``mean_k |acf_twin(k) - acf_device(k)|`` (a twin without spread has acf 0);
- ``w1``: Wasserstein-1 distance between the twin's and the device's marginal
  at each (sequence, step, channel), divided by sigma_c, averaged
  (equal to ``scipy.stats.wasserstein_distance``, vectorised);
- ``nrmse_by_horizon``: ``{str(h): sqrt(mean_m (pred - target)^2 at step h) / s_c}``
  for horizons h (1-based steps), averaged over channels.
"""
from __future__ import annotations

import numpy as np

from ..errors import DatasetError


def _array(x) -> np.ndarray:
    """float64 numpy array of ``x`` (a torch tensor is detached and read on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def wasserstein1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W1 between empirical distributions along the last axis: a (..., na), b (..., nb) -> (...)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[:-1] != b.shape[:-1] or a.shape[-1] == 0 or b.shape[-1] == 0:
        raise DatasetError(f"wasserstein1 needs samples of matching leading shape; got {a.shape}, {b.shape}")
    lead = a.shape[:-1]
    na, nb = a.shape[-1], b.shape[-1]
    vals = np.concatenate([a.reshape(-1, na), b.reshape(-1, nb)], axis=1)
    weights = np.concatenate([np.full(na, 1.0 / na), np.full(nb, -1.0 / nb)])
    order = np.argsort(vals, axis=1, kind="stable")
    sv = np.take_along_axis(vals, order, axis=1)
    cdf = np.cumsum(weights[order], axis=1)[:, :-1]
    return (np.abs(cdf) * np.diff(sv, axis=1)).sum(axis=1).reshape(lead)


def channel_scales(device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma, signal)`` (C,) of device repeats (M, R, T, C); zeros replaced by 1."""
    device = np.asarray(device, dtype=np.float64)
    sigma = device.reshape(-1, device.shape[-1]).std(axis=0)
    signal = device.mean(axis=1).reshape(-1, device.shape[-1]).std(axis=0)
    return np.where(sigma > 0, sigma, 1.0), np.where(signal > 0, signal, 1.0)


def autocorrelation(samples: np.ndarray) -> np.ndarray:
    """Normalised autocovariance (T-1, C) of residuals of samples (M, Q, T, C) for lags 1..T-1."""
    x = np.asarray(samples, dtype=np.float64)
    e = x - x.mean(axis=1, keepdims=True)
    T = x.shape[2]
    out = np.zeros((max(T - 1, 0), x.shape[-1]))
    for k in range(1, T):
        a, b = e[:, :, :T - k], e[:, :, k:]
        num = (a * b).sum(axis=(0, 1, 2))
        den = np.sqrt((a * a).sum(axis=(0, 1, 2)) * (b * b).sum(axis=(0, 1, 2)))
        out[k - 1] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return out


def _check(device, twin) -> tuple[np.ndarray, np.ndarray]:
    device, twin = _array(device), _array(twin)
    if device.ndim != 4 or twin.ndim != 4 or device.shape[0] != twin.shape[0] \
            or device.shape[2:] != twin.shape[2:]:
        raise DatasetError(f"device (M, R, T, C) and twin (M, Q, T, C) must agree on M, T, C; got "
                           f"{device.shape} and {twin.shape}")
    if device.shape[1] < 2:
        raise DatasetError("device repeats need R >= 2 to measure spread; collect with --repeats M R, R >= 2")
    return device, twin


def _scale(device: np.ndarray, scale) -> np.ndarray:
    return channel_scales(device)[0] if scale is None else _array(scale)


def mean_error(device, twin, *, scale=None) -> float:
    """``mean |mean_q twin - mean_r device| / sigma_c`` over sequences, steps, channels."""
    device, twin = _check(device, twin)
    return float((np.abs(twin.mean(axis=1) - device.mean(axis=1)) / _scale(device, scale)).mean())


def std_ratio(device, twin, *, scale=None) -> float:
    """Twin / device spread: ``sqrt(mean_m var_q twin / mean_m var_r device)`` per step and channel,
    averaged (0 for a deterministic twin, 1 for a perfect one; NaN when the device has no spread)."""
    device, twin = _check(device, twin)
    sigma = _scale(device, scale)
    var_dev = device.var(axis=1, ddof=1).mean(axis=0)                  # (T, C)
    var_twin = (twin.var(axis=1, ddof=1).mean(axis=0) if twin.shape[1] > 1
                else np.zeros_like(var_dev))
    ok = var_dev > 1e-12 * sigma ** 2
    return float(np.sqrt(var_twin[ok] / var_dev[ok]).mean()) if ok.any() else float("nan")


def autocov_error(device, twin) -> float:
    """``mean_k |acf_twin(k) - acf_device(k)|`` over lags 1..T-1 and channels (0 when T = 1)."""
    device, twin = _check(device, twin)
    if device.shape[2] < 2:
        return 0.0
    acf_dev = autocorrelation(device)
    acf_twin = autocorrelation(twin) if twin.shape[1] > 1 else np.zeros_like(acf_dev)
    return float(np.abs(acf_twin - acf_dev).mean())


def w1(device, twin, *, scale=None) -> float:
    """Wasserstein-1 distance of the twin's and the device's marginals at each (sequence, step,
    channel), divided by sigma_c, averaged."""
    device, twin = _check(device, twin)
    dist = wasserstein1(np.moveaxis(twin, 1, -1), np.moveaxis(device, 1, -1))     # (M, T, C)
    return float((dist / _scale(device, scale)).mean())


def repeat_metrics(device, twin, *, scale=None) -> dict[str, float]:
    """``mean_error``, ``std_ratio``, ``autocov_error``, ``w1`` (module docstring) as floats."""
    device, twin = _check(device, twin)
    scale = _scale(device, scale)
    return {"mean_error": mean_error(device, twin, scale=scale), "std_ratio": std_ratio(device, twin, scale=scale),
            "autocov_error": autocov_error(device, twin), "w1": w1(device, twin, scale=scale)}


def per_step(device: np.ndarray, twin: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step (T,) curves, averaged over sequences and channels: ``w1``, ``std_ratio``, ``mean_error``."""
    device = np.asarray(device, dtype=np.float64)
    twin = np.asarray(twin, dtype=np.float64)
    w1 = (wasserstein1(np.moveaxis(twin, 1, -1), np.moveaxis(device, 1, -1)) / scale).mean(axis=(0, 2))
    var_dev = device.var(axis=1, ddof=1).mean(axis=0)
    var_twin = twin.var(axis=1, ddof=1).mean(axis=0) if twin.shape[1] > 1 else np.zeros_like(var_dev)
    ratio = np.sqrt(var_twin / np.where(var_dev > 0, var_dev, np.inf)).mean(axis=1)
    err = (np.abs(twin.mean(axis=1) - device.mean(axis=1)) / scale).mean(axis=(0, 2))
    return {"w1": w1, "std_ratio": ratio, "mean_error": err}


def nrmse_by_horizon(pred: np.ndarray, target: np.ndarray, horizons, scale: np.ndarray) -> dict[str, float]:
    """``{str(h): NRMSE at step h}`` for pred, target (M, T, C); horizons beyond T are skipped."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise DatasetError(f"pred and target must both be (M, T, C); got {pred.shape}, {target.shape}")
    out = {}
    for h in horizons:
        h = int(h)
        if 1 <= h <= pred.shape[1]:
            rmse = np.sqrt(((pred[:, h - 1] - target[:, h - 1]) ** 2).mean(axis=0))
            out[str(h)] = float((rmse / scale).mean())
    return out


def default_horizons(T: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to and including T."""
    hs = [h for h in (1, 2, 5, 10, 20, 50, 100, 200, 500) if h <= T]
    return hs + ([T] if T not in hs else [])
