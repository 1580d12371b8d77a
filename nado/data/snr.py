"""Signal-to-noise ratio of a rig, measured one way everywhere (DESIGN.md).

Drive M random sequences (uniform over the active range) R times each:
signal = the standard deviation, over sequences and steps, of the mean over
repeats; noise = the root mean square, over sequences and steps, of the
standard deviation over repeats; SNR = signal / noise, per output channel, and
the median over channels. A collected dataset's repeats set is exactly such a
measurement, so :func:`snr_from_repeats` needs no extra instrument time.
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
            "M": M, "R": R, "T": T}


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
