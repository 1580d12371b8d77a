"""Digital lock-in for the nanoring rig (paper, Methods): pure functions on arrays.

Signal chain (defaults are the paper's):

1. The DAQ samples the voltage across the device at ``sample_rate_hz`` = 2 MHz
   while a sinusoidal current of amplitude ``current_a`` = 2 mA at
   ``carrier_hz`` = 13,523 Hz flows through it: ``v(t) = current_a * R(t) *
   sin(2 pi f t + phi) + noise``, with ``R(t)`` the AMR resistance (ohm).
2. :func:`demodulate` multiplies ``v`` by a digital reference at the carrier
   (I: cosine, Q: sine), low-passes both with a zero-phase Butterworth filter
   (``scipy.signal.butter(order=4, cutoff_hz=320, output='sos')`` applied with
   ``sosfiltfilt``: no group delay, so samples stay aligned with the field
   rotation; the 2f = 27 kHz product is attenuated by ~ -230 dB), and returns
   the magnitude ``2 * sqrt(I^2 + Q^2)``: the carrier's amplitude in volts,
   independent of the phase ``phi`` (and of a small frequency offset between
   the generator and the reference, well below the 320 Hz cut-off).
3. The result is downsampled to ``output_rate_hz`` = 3.2 kHz by taking every
   ``sample_rate_hz / output_rate_hz``-th sample (625 at the defaults),
   starting in the middle of the first block: 50 samples per 64 Hz rotation.
4. :func:`step_observable` turns each rotation's 50 samples into resistance
   (``amplitude / current_a``, ohm) and reports, per input step, either their
   mean (``"mean"``, one value: the rotation-mean AMR the emulated NRA reports)
   or all 50 (``"samples"``).

Shapes: ``signal_v`` ``(S,)`` volts at ``sample_rate_hz``; :func:`demodulate`
returns ``(S // factor,)`` volts; :func:`rotations` gives ``(n_rot, 50)``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal as sps

CARRIER_HZ = 13_523.0
SAMPLE_RATE_HZ = 2_000_000.0
CUTOFF_HZ = 320.0
OUTPUT_RATE_HZ = 3_200.0
ROTATION_HZ = 64.0
CURRENT_A = 2e-3
FILTER_ORDER = 4


def whole_multiple(rate_hz: float, base_hz: float, *, minimum: int = 1,
                   what: str = "the base rate") -> int:
    """``rate_hz / base_hz`` as an int; ValueError unless it is a whole number >= ``minimum``."""
    ratio = rate_hz / base_hz
    n = int(round(ratio))
    if n < minimum or abs(ratio - n) > 1e-9 * ratio:
        at_least = f" (>= {minimum})" if minimum > 1 else ""
        raise ValueError(f"the rate {rate_hz:g} Hz must be a whole multiple{at_least} of {what} "
                         f"{base_hz:g} Hz")
    return n


def decimation_factor(sample_rate_hz: float, output_rate_hz: float) -> int:
    """``sample_rate_hz / output_rate_hz`` as an int; ValueError if it is not a whole number."""
    return whole_multiple(sample_rate_hz, output_rate_hz, what="the lock-in output rate")


@lru_cache(maxsize=16)
def lowpass_sos(cutoff_hz: float, sample_rate_hz: float, order: int = FILTER_ORDER) -> np.ndarray:
    """Butterworth low-pass as second-order sections ``(order//2, 6)``."""
    if not 0 < cutoff_hz < sample_rate_hz / 2:
        raise ValueError(f"cut-off {cutoff_hz:g} Hz must lie in (0, {sample_rate_hz / 2:g}) Hz")
    return sps.butter(order, cutoff_hz, btype="low", fs=sample_rate_hz, output="sos")


def demodulate(signal_v: np.ndarray, *, carrier_hz: float = CARRIER_HZ,
               sample_rate_hz: float = SAMPLE_RATE_HZ, cutoff_hz: float = CUTOFF_HZ,
               output_rate_hz: float = OUTPUT_RATE_HZ, order: int = FILTER_ORDER,
               t0_s: float = 0.0) -> np.ndarray:
    """Lock-in magnitude of ``signal_v`` ``(S,)``: carrier amplitude in volts, ``(S // factor,)``.

    ``t0_s`` is the time of the first sample (the reference's phase origin; the
    magnitude does not depend on it).
    """
    v = np.asarray(signal_v, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"signal_v must be 1-D (S,), got shape {v.shape}")
    factor = decimation_factor(sample_rate_hz, output_rate_hz)
    n_out = v.shape[0] // factor
    if n_out < 1:
        raise ValueError(f"need at least {factor} samples for one output sample, got {v.shape[0]}")
    v = v[: n_out * factor]
    phase = 2 * np.pi * carrier_hz * (t0_s + np.arange(v.shape[0]) / sample_rate_hz)
    iq = np.empty((2, v.shape[0]))
    np.multiply(v, np.cos(phase), out=iq[0])
    np.multiply(v, np.sin(phase), out=iq[1])
    # pad by mirroring (even: keeps the level at the edges) over ~3 periods of the cut-off
    padlen = min(v.shape[0] - 1, int(3 * sample_rate_hz / cutoff_hz))
    iq = sps.sosfiltfilt(lowpass_sos(float(cutoff_hz), float(sample_rate_hz), int(order)), iq,
                         axis=-1, padtype="even", padlen=padlen)
    picked = iq[:, factor // 2::factor]
    return 2.0 * np.hypot(picked[0], picked[1])


def rotations(lockin_v: np.ndarray, samples_per_rotation: int = 50) -> np.ndarray:
    """Split downsampled lock-in output ``(n,)`` into whole rotations ``(n // spr, spr)``."""
    x = np.asarray(lockin_v, dtype=np.float64)
    n_rot = x.shape[0] // samples_per_rotation
    return x[: n_rot * samples_per_rotation].reshape(n_rot, samples_per_rotation)


def step_observable(rotation_v: np.ndarray, *, current_a: float = CURRENT_A,
                    observable: str = "mean") -> np.ndarray:
    """Per-step observable from ``(n_rot, spr)`` lock-in volts.

    ``"mean"``: ``(n_rot, 1)`` rotation-mean resistance in ohm (the emulated NRA's
    output). ``"samples"``: ``(n_rot, spr)`` resistance in ohm.
    """
    r = np.asarray(rotation_v, dtype=np.float64) / float(current_a)
    if observable == "mean":
        return r.mean(axis=1, keepdims=True)
    if observable == "samples":
        return r
    raise ValueError(f"observable must be 'mean' or 'samples', got {observable!r}")


def lockin_steps(signal_v: np.ndarray, *, carrier_hz: float = CARRIER_HZ,
                 sample_rate_hz: float = SAMPLE_RATE_HZ, cutoff_hz: float = CUTOFF_HZ,
                 output_rate_hz: float = OUTPUT_RATE_HZ, rotation_hz: float = ROTATION_HZ,
                 current_a: float = CURRENT_A, observable: str = "mean") -> np.ndarray:
    """The whole chain: raw AI volts ``(S,)`` -> per-rotation observable ``(n_rot, 1 | spr)`` ohm."""
    spr = decimation_factor(output_rate_hz, rotation_hz)
    mag = demodulate(signal_v, carrier_hz=carrier_hz, sample_rate_hz=sample_rate_hz,
                     cutoff_hz=cutoff_hz, output_rate_hz=output_rate_hz)
    return step_observable(rotations(mag, spr), current_a=current_a, observable=observable)


def carrier_signal(resistance_ohm: np.ndarray, *, current_a: float = CURRENT_A,
                   carrier_hz: float = CARRIER_HZ, sample_rate_hz: float = SAMPLE_RATE_HZ,
                   phase_rad: float = 0.0, t0_s: float = 0.0) -> np.ndarray:
    """The device voltage ``(S,)`` for a resistance trace ``(S,)`` (ohm) sampled at ``sample_rate_hz``."""
    r = np.asarray(resistance_ohm, dtype=np.float64)
    t = t0_s + np.arange(r.shape[0]) / sample_rate_hz
    return current_a * r * np.sin(2 * np.pi * carrier_hz * t + phase_rad)
