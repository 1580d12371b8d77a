"""Signal-to-noise ratio of a rig, measured one way everywhere (DESIGN.md).

Drive M random sequences (uniform over the active range) R times each:
signal = the standard deviation, over sequences and steps, of the mean over
repeats; noise = the root mean square, over sequences and steps, of the
standard deviation over repeats; SNR = signal / noise, per output channel, and
the median over channels. A collected dataset's repeats set is exactly such a
measurement, so :func:`snr_from_repeats` needs no extra instrument time.

The same repeats also give the shape of the spread that the paper's device-level figures show
(Fig. 2b/2d: repeats spreading over much of the response range, noise-induced bifurcations,
spread shaped by past inputs), so a rig can be compared with them in numbers:
``spread_by_step`` (the noise at each step since reset, relative to the mean noise: a spread that
grows with history rises along it), ``width_of_range`` (the 5-95 % width of the repeats at a
(sequence, step), over the range of the mean response, averaged; ``width_of_range_p90`` its 90th
percentile) and ``bimodal_fraction`` (the share of (sequence, step, channel) whose repeats are
bimodal by Sarle's coefficient ``(skew^2 + 1) / (kurtosis + 3 (R-1)^2 / ((R-2)(R-3))) > 5/9``,
the value of a uniform distribution; needs R >= 20 for a usable estimate).
:func:`measure_snr` makes the measurement on anything with ``describe()`` and ``drive()``
(a rig or a ``bridge.RigClient``): M=64 x R=32 x T=20 by default.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def snr_from_repeats(outputs: np.ndarray) -> dict[str, Any]:
    """SNR of repeated measurements ``outputs (M, R, T, n_out)``.

    Returns ``{snr (median over channels), snr_p10, snr_p90 (percentiles over channels),
    per_channel [n_out], signal [n_out], noise [n_out], lag1 (median over channels of the lag-1
    autocorrelation in time of the repeat residuals: the noise's whiteness), M, R, T}``.
    Raises ValueError when ``R < 2`` or ``M * T < 2``.
    """
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim != 4:
        raise ValueError(f"repeats outputs must be (M, R, T, n_out), got shape {y.shape}")
    M, R, T, n = y.shape
    if R < 2 or M * T < 2:
        raise ValueError(f"the SNR needs R >= 2 repeats and M*T >= 2 points, got M={M}, R={R}, T={T}")
    signal = y.mean(axis=1).reshape(M * T, n).std(axis=0)
    noise = np.sqrt((y.std(axis=1, ddof=1) ** 2).reshape(M * T, n).mean(axis=0))
    per = np.where(noise > 0, signal / np.where(noise > 0, noise, 1.0), np.inf)
    resid = y - y.mean(axis=1, keepdims=True)
    a, b = resid[:, :, :-1], resid[:, :, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        lag1 = (a * b).mean(axis=(0, 1, 2)) / np.sqrt((a * a).mean(axis=(0, 1, 2)) * (b * b).mean(axis=(0, 1, 2)))
    return {"snr": float(np.median(per)), "snr_p10": float(np.percentile(per, 10)),
            "snr_p90": float(np.percentile(per, 90)), "per_channel": per.tolist(),
            "signal": signal.tolist(), "noise": noise.tolist(),
            "lag1": float(np.nanmedian(lag1)) if T > 1 and np.isfinite(lag1).any() else float("nan"),
            "M": M, "R": R, "T": T, **_spread_shape(y, resid, noise)}


def _spread_shape(y: np.ndarray, resid: np.ndarray, noise: np.ndarray) -> dict[str, Any]:
    """The module docstring's spread statistics of repeats ``y (M, R, T, n)``."""
    M, R, T, n = y.shape
    by_step = np.sqrt((resid ** 2).mean(axis=(0, 1)))                     # (T, n)
    by_step = by_step / np.where(noise > 0, noise, 1.0)
    mean = y.mean(axis=1)
    span = mean.reshape(-1, n).max(axis=0) - mean.reshape(-1, n).min(axis=0)
    width = (np.percentile(y, 95, axis=1) - np.percentile(y, 5, axis=1)) / np.where(span > 0, span, 1.0)
    out: dict[str, Any] = {"spread_by_step": np.median(by_step, axis=1).tolist(),
                           "width_of_range": float(width.mean()),
                           "width_of_range_p90": float(np.percentile(width, 90)),
                           "bimodal_fraction": float("nan")}
    if R >= 20:
        sd = resid.std(axis=1)
        ok = sd > 0
        z = resid / np.where(ok, sd, 1.0)[:, None]
        skew, kurt = (z ** 3).mean(axis=1), (z ** 4).mean(axis=1) - 3.0
        bc = (skew ** 2 + 1) / (kurt + 3 * (R - 1) ** 2 / ((R - 2) * (R - 3)))
        out["bimodal_fraction"] = float((bc[ok] > 5 / 9).mean()) if ok.any() else 0.0
    return out


def repeat_responses(rig: Any, lo, hi, *, M: int = 64, R: int = 32, T: int = 20,
                     seed: int = 0) -> np.ndarray:
    """Outputs ``(M, R, T, n_out)`` of M uniform random sequences in lo..hi, each driven R times."""
    n_in = int(rig.describe()["input"]["dims"][0])
    rng = np.random.default_rng(seed)
    seqs = rng.uniform(lo, hi, size=(M, T, n_in))
    inputs = np.repeat(seqs, R, axis=0)
    res = rig.drive(inputs, reset=True, seed=seed + 1)
    return res.outputs.reshape(M, R, T, -1)


def measure_snr(rig: Any, lo, hi, *, M: int = 64, R: int = 32, T: int = 20, seed: int = 0) -> dict:
    """DESIGN.md's SNR of ``rig`` over the active range lo..hi (see the module docstring)."""
    return snr_from_repeats(repeat_responses(rig, lo, hi, M=M, R=R, T=T, seed=seed))
