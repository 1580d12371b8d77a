"""Find a rig's active input range: where its settled response changes with the input.

The paper's first step ("sweeping input stimuli and observing changes in
measured output"), defined here as follows. For ``levels`` equally spaced
constant inputs ``u_j`` over the rig's ``describe()`` range (every input channel
at the same level), drive ``repeats`` experiments of ``steps`` steps, each after
a reset. The *settled response* ``r_j`` (n_out,) is the mean output over the
repeats and the last half of the steps. Channels are standardised by their
spread over the levels (channels that do not move are ignored), and the
*sensitivity* ``S_j = || d r / d u ||_2`` (the derivative of a local quadratic
fit over 5 levels, Savitzky-Golay, which tames the noise of the response); a
level whose derivative is within 3 standard errors of zero (errors estimated
from the spread over repeats) counts as insensitive. ``S`` measures how much the
response changes per unit input. Experiments run in a random order, so slow
drift averages out instead of following the level. The active range is the span of levels where ``S_j >= fraction * max S``,
its ends interpolated linearly between grid levels.

A device that is dead below a threshold and saturated above another (the NRA:
no domain-wall motion below ~20 Oe, everything switched above ~35 Oe) has a
response that moves only in between, so that is what this finds. A linear rig
is active over its whole range.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class ActiveRange:
    """The result of a sweep: ``lo``/``hi`` (n_in,) in the rig's input units, plus the curve.

    ``levels`` (L,), ``response`` (L, n_out) settled response, ``sensitivity`` (L,)
    normalised to max 1, ``fraction`` the threshold used, ``instrument_s`` spent.
    """

    lo: np.ndarray
    hi: np.ndarray
    levels: np.ndarray
    response: np.ndarray
    sensitivity: np.ndarray
    fraction: float
    instrument_s: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in the dataset's ``active_range`` attribute)."""
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist(), "levels": self.levels.tolist(),
                "response": self.response.tolist(), "sensitivity": self.sensitivity.tolist(),
                "fraction": self.fraction, "instrument_s": self.instrument_s, **self.params}


def sensitivity_curve(levels: np.ndarray, response: np.ndarray, stderr: np.ndarray | None = None, *,
                      z_min: float = 3.0) -> np.ndarray:
    """``(L,)`` sensitivity ``|| d r / d u ||`` of standardised channels, max 1 (or zeros).

    ``response`` (L, C) settled response per level; ``stderr`` (L, C) its standard
    error (from the repeats). With ``stderr``, a level whose derivative is not
    ``z_min`` standard errors away from zero (``sum_c g_c^2 < z_min^2 sum_c var g_c``)
    gets sensitivity 0: noise alone never makes a level active.
    """
    levels = np.asarray(levels, dtype=np.float64)
    r = np.asarray(response, dtype=np.float64).reshape(len(levels), -1)
    spread = r.std(axis=0)
    moving = spread > 1e-12 * max(1.0, float(np.abs(r).max()))
    if not moving.any() or len(levels) < 3:
        return np.zeros(len(levels))
    z = (r[:, moving] - r[:, moving].mean(axis=0)) / spread[moving]
    delta = float(levels[1] - levels[0])
    window = min(len(levels) - (1 - len(levels) % 2), 5)
    if window >= 3:  # the derivative as a linear operator, so its noise can be propagated exactly
        from scipy.signal import savgol_filter
        op = savgol_filter(np.eye(len(levels)), window, min(2, window - 1), deriv=1, axis=0,
                           delta=delta, mode="interp")
    else:
        op = np.stack([np.gradient(e, levels) for e in np.eye(len(levels))], axis=1)
    grad = op @ z
    power = (grad ** 2).sum(axis=1)
    if stderr is not None:
        se = np.asarray(stderr, dtype=np.float64).reshape(len(levels), -1)[:, moving] / spread[moving]
        noise_power = (op ** 2) @ (se ** 2)                      # (L, C) variance of each gradient
        power = np.where(power >= z_min ** 2 * noise_power.sum(axis=1), power, 0.0)
    s = np.sqrt(power)
    return s / s.max() if s.max() > 0 else s


def range_from_curve(levels: np.ndarray, sensitivity: np.ndarray, fraction: float) -> tuple[float, float]:
    """Lowest and highest input where ``sensitivity >= fraction`` (ends linearly interpolated)."""
    levels = np.asarray(levels, dtype=np.float64)
    s = np.asarray(sensitivity, dtype=np.float64)
    above = np.flatnonzero(s >= fraction)
    if len(above) == 0:
        return float(levels[0]), float(levels[-1])
    i, j = int(above[0]), int(above[-1])

    def cross(a: int, b: int) -> float:  # level between a (below) and b (above) where s == fraction
        t = (fraction - s[a]) / (s[b] - s[a]) if s[b] != s[a] else 0.0
        return float(levels[a] + t * (levels[b] - levels[a]))

    lo = float(levels[0]) if i == 0 else cross(i - 1, i)
    hi = float(levels[-1]) if j == len(levels) - 1 else cross(j + 1, j)
    return lo, hi


def find_active_range(client: Any, *, levels: int = 65, repeats: int = 16, steps: int = 20,
                      fraction: float = 0.1, seed: int = 0,
                      override: tuple[float, float] | None = None) -> ActiveRange:
    """Sweep constant inputs through ``client`` (a ``bridge.RigClient``) and find the active range.

    ``levels`` constant inputs over ``describe()['input']`` min..max, ``repeats``
    experiments of ``steps`` steps each (one drive, seed ``seed``); see the module
    docstring for the definition. ``override=(lo, hi)`` skips the sweep and
    returns that range (validated against the rig's range).
    """
    desc = client.describe()
    n_in = int(desc["input"]["dims"][0])
    rmin, rmax = float(desc["input"]["min"]), float(desc["input"]["max"])
    if override is not None:
        lo, hi = (float(v) for v in override)
        if not (rmin <= lo < hi <= rmax):
            raise ConfigError(f"active range {lo:g}..{hi:g} must satisfy {rmin:g} <= lo < hi <= {rmax:g} "
                              f"(the rig's input range, {desc['input'].get('units', '')})")
        return ActiveRange(lo=np.full(n_in, lo), hi=np.full(n_in, hi), levels=np.array([lo, hi]),
                           response=np.zeros((2, 0)), sensitivity=np.zeros(2), fraction=fraction,
                           instrument_s=0.0, params={"override": True})
    if levels < 3 or repeats < 1 or steps < 2:
        raise ConfigError(f"sweep needs levels >= 3, repeats >= 1, steps >= 2; got {levels}, {repeats}, {steps}")
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must lie in (0, 1), got {fraction}")
    grid = np.linspace(rmin, rmax, levels)
    # experiments in a random order, so slow drift does not masquerade as a response to the level
    order = np.random.default_rng(int(seed)).permutation(levels * repeats)
    level_of = np.repeat(np.arange(levels), repeats)[order]
    inputs = grid[level_of][:, None, None] * np.ones((1, steps, n_in))
    res = client.drive(inputs, reset=True, seed=int(seed))
    out = np.asarray(res.outputs, dtype=np.float64)[np.argsort(order)]
    out = out.reshape(levels, repeats, steps, -1)
    settled = out[:, :, steps // 2:, :].mean(axis=2)          # (L, repeats, n_out)
    response = settled.mean(axis=1)
    stderr = settled.std(axis=1, ddof=1) / np.sqrt(repeats) if repeats > 1 else None
    sens = sensitivity_curve(grid, response, stderr)
    lo, hi = range_from_curve(grid, sens, fraction)
    return ActiveRange(lo=np.full(n_in, lo), hi=np.full(n_in, hi), levels=grid, response=response,
                       sensitivity=sens, fraction=float(fraction), instrument_s=float(res.instrument_s),
                       params={"override": False, "repeats": repeats, "steps": steps, "seed": seed})
