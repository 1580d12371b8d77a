"""Coil waveforms of the nanoring rig: one field rotation per input step (pure functions).

An experiment is a list of per-rotation field amplitudes (Oe)::

    [0] * lead_in            field off while the lock-in filter settles
    [reset_oe, reset_max_oe] the reset protocol (paper: one rotation at 80 Oe,
                             then one step at the rig's maximum input)
    s_1 .. s_T               the input steps
    [0] * ramp_down          field ramped to zero; the last samples written are 0

:func:`coil_waveforms` turns amplitudes into the two coil-supply voltages: axis
x carries ``A(t) cos(2 pi f t)`` and axis y ``A(t) sin(2 pi f t)`` (a field of
magnitude ``A`` rotating at ``f`` = 64 Hz), divided by each axis's calibration
(Oe per volt). Between rotations the amplitude moves from the previous value to
the next with a raised-cosine over the first ``transition_fraction`` of the
rotation (no step in the coil current; bounded slew), then holds.

Peak slew on an axis is about ``2 pi f A + pi/2 * |dA| / (transition_fraction / f)``
Oe/s (80 Oe from zero with the defaults: ~32,000 + ~80,000 Oe/s).
"""
from __future__ import annotations

import numpy as np

from . import lockin


def experiment_amplitudes(steps_oe: np.ndarray, *, reset: bool, reset_oe: float,
                          reset_max_oe: float, lead_in: int = 1, ramp_down: int = 1) -> np.ndarray:
    """Per-rotation amplitudes ``(lead_in + 2*reset + T + ramp_down,)`` for steps ``(T,)`` (Oe)."""
    head = [0.0] * lead_in + ([float(reset_oe), float(reset_max_oe)] if reset else [])
    return np.concatenate([head, np.asarray(steps_oe, dtype=np.float64).reshape(-1), [0.0] * ramp_down])


def step_offset(*, reset: bool, lead_in: int = 1) -> int:
    """Index of the first input step's rotation in :func:`experiment_amplitudes`."""
    return lead_in + (2 if reset else 0)


def envelope(amplitudes_oe: np.ndarray, samples_per_rotation: int,
             transition_fraction: float = 0.1) -> np.ndarray:
    """Field magnitude per output sample ``(n_rot * spr,)``, Oe, starting from 0."""
    a = np.asarray(amplitudes_oe, dtype=np.float64)
    spr = int(samples_per_rotation)
    n_tr = max(1, int(round(transition_fraction * spr)))
    if n_tr > spr:
        raise ValueError(f"transition_fraction must be in (0, 1], got {transition_fraction}")
    prev = np.concatenate([[0.0], a[:-1]])
    env = np.repeat(a, spr).reshape(a.shape[0], spr)
    u = (np.arange(1, n_tr + 1) / n_tr)
    w = 0.5 * (1.0 - np.cos(np.pi * u))  # 0 -> 1 raised cosine; reaches the target at sample n_tr-1
    env[:, :n_tr] = prev[:, None] + (a - prev)[:, None] * w[None, :]
    return env.reshape(-1)


def coil_waveforms(amplitudes_oe: np.ndarray, *, rate_hz: float, rotation_hz: float,
                   oe_per_volt: tuple[float, float] | np.ndarray,
                   transition_fraction: float = 0.1) -> np.ndarray:
    """The two coil-supply voltages ``(n_rot * spr, 2)`` for per-rotation amplitudes (Oe)."""
    spr = samples_per_rotation(rate_hz, rotation_hz)
    env = envelope(amplitudes_oe, spr, transition_fraction)
    phase = 2 * np.pi * rotation_hz * np.arange(env.shape[0]) / rate_hz
    cal = np.asarray(oe_per_volt, dtype=np.float64)
    out = np.empty((env.shape[0], 2))
    out[:, 0] = env * np.cos(phase) / cal[0]
    out[:, 1] = env * np.sin(phase) / cal[1]
    out[env == 0.0] = 0.0  # exact zeros where the field is off (no -0.0 or rounding residue)
    return out


def samples_per_rotation(rate_hz: float, rotation_hz: float) -> int:
    """``rate_hz / rotation_hz`` as an int; ValueError unless it is a whole number >= 4."""
    return lockin.whole_multiple(rate_hz, rotation_hz, minimum=4, what="the rotation frequency")


def field_amplitudes(volts: np.ndarray, *, rate_hz: float, rotation_hz: float,
                     oe_per_volt: tuple[float, float] | np.ndarray) -> np.ndarray:
    """Inverse of :func:`coil_waveforms`: the held amplitude of each rotation ``(n_rot,)``, Oe.

    Read at each rotation's last sample (after the transition), as the field magnitude.
    """
    spr = samples_per_rotation(rate_hz, rotation_hz)
    v = np.asarray(volts, dtype=np.float64)
    field = v * np.asarray(oe_per_volt, dtype=np.float64)[None, :]
    mag = np.hypot(field[:, 0], field[:, 1])
    n_rot = v.shape[0] // spr
    return mag[: n_rot * spr].reshape(n_rot, spr)[:, -1]
