"""Measure a rig's signal-to-noise ratio the one way DESIGN.md defines it.

Drive M random sequences (uniform over the active range ``lo..hi``) R times each;
signal = the std, over sequences and steps, of the mean over repeats; noise = the
root mean square, over sequences and steps, of the std over repeats; SNR =
signal / noise per output channel (then the median for a spectrum). Also the
lag-1 autocorrelation in time of the repeat residuals (the noise's whiteness).

The figures come from :func:`nado.snr.snr_from_repeats`, the one implementation that
``nado run`` also uses. Works with anything that has ``describe()`` and ``drive()``: a rig or a
``bridge.RigClient``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nado.snr import snr_from_repeats  # the one SNR definition; emulator may import nado


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
