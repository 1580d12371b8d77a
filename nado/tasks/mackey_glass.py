"""Mackey-Glass future prediction.

``dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t)`` with a = 0.2, b = 0.1,
tau = 17, n = 10, x(t <= 0) = x0 = 1.2 (constant history). Integrated with
classical RK4 at a fine step ``dt_fine`` (tau / dt_fine must be a whole number);
the delayed value at RK4's half steps is interpolated with the cubic Hermite
formula from the stored values and derivatives, so the scheme stays fourth order. Sampled every
``sample_dt = 2`` time units (about 25 samples per quasi-period).

Task layout (the paper's): 5,100 samples, the first 100 discarded as wash-out,
the next 1,000 for training (and the cascade's corrective data), the remaining
4,000 tested in 10 sections of 400. Targets are x(t + k) for k = 1..10 samples;
the series is integrated ``max(horizons)`` samples further so every test point
has all its targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

A, B, TAU, N_EXP, X0 = 0.2, 0.1, 17.0, 10.0, 1.2


@dataclass(frozen=True)
class MackeyGlassTask:
    """Arrays (time in samples of ``sample_dt`` time units; K = len(horizons)):

    ``train_inputs (n_train,)``, ``train_targets (n_train, K)``,
    ``test_inputs (sections, section_length)``, ``test_targets (sections, section_length, K)``,
    ``horizons (K,)`` int (steps ahead), ``series`` the whole sampled series after wash-out.
    """

    train_inputs: np.ndarray
    train_targets: np.ndarray
    test_inputs: np.ndarray
    test_targets: np.ndarray
    horizons: np.ndarray
    series: np.ndarray
    sample_dt: float


def mackey_glass(n_samples: int, *, sample_dt: float = 2.0, dt_fine: float = 0.1,
                 a: float = A, b: float = B, tau: float = TAU, n: float = N_EXP,
                 x0: float = X0) -> np.ndarray:
    """The series sampled at t = 0, sample_dt, ..., (n_samples - 1) * sample_dt; shape (n_samples,)."""
    lag = tau / dt_fine
    per_sample = sample_dt / dt_fine
    if abs(lag - round(lag)) > 1e-9 or abs(per_sample - round(per_sample)) > 1e-9:
        raise ValueError(f"dt_fine={dt_fine} must divide tau={tau} and sample_dt={sample_dt}")
    lag, per_sample = int(round(lag)), int(round(per_sample))
    if lag < 2:
        raise ValueError(f"dt_fine={dt_fine} too coarse for the delay: need tau/dt_fine >= 2")
    steps = (n_samples - 1) * per_sample
    # x[k + lag] is x at t = k * dt; indices 0..lag hold the constant history.
    # fd[j] is dx/dt at grid point j (right derivative at t = 0), for the Hermite
    # interpolation of the delayed value at half steps: every breakpoint of the
    # solution (t = 0, tau, 2 tau, ...) lies on the grid, so no stencil crosses one.
    x = np.empty(steps + lag + 1)
    fd = np.zeros(steps + lag + 1)
    x[:lag + 1] = x0
    h = dt_fine
    for k in range(steps):
        d0, d1 = x[k], x[k + 1]  # x(t - tau), x(t + h - tau)
        if k + 1 <= lag:
            dh = x0  # the interval lies in the constant history
        else:
            dh = 0.5 * (d0 + d1) + h / 8.0 * (fd[k] - fd[k + 1])  # cubic Hermite midpoint
        xt = x[k + lag]
        f0 = a * d0 / (1.0 + d0 ** n)
        fh = a * dh / (1.0 + dh ** n)
        f1 = a * d1 / (1.0 + d1 ** n)
        k1 = f0 - b * xt
        fd[k + lag] = k1
        k2 = fh - b * (xt + 0.5 * h * k1)
        k3 = fh - b * (xt + 0.5 * h * k2)
        k4 = f1 - b * (xt + h * k3)
        x[k + lag + 1] = xt + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return x[lag::per_sample].copy()


def make_mackey_glass_task(*, n_samples: int = 5100, washout: int = 100, n_train: int = 1000,
                           sections: int = 10, section_length: int = 400,
                           horizons: tuple[int, ...] | list[int] = tuple(range(1, 11)),
                           sample_dt: float = 2.0, dt_fine: float = 0.1) -> MackeyGlassTask:
    """Split the series as the paper does; see the module docstring."""
    horizons = np.asarray(sorted(set(int(k) for k in horizons)), dtype=np.int64)
    if horizons.size == 0 or horizons[0] < 1:
        raise ValueError(f"horizons must be positive steps ahead, got {horizons.tolist()}")
    need = washout + n_train + sections * section_length
    if need > n_samples:
        raise ValueError(f"washout + n_train + sections*section_length = {need} exceeds "
                         f"n_samples = {n_samples}")
    full = mackey_glass(n_samples + int(horizons[-1]), sample_dt=sample_dt, dt_fine=dt_fine)
    s = full[washout:]

    def targets(start: int, count: int) -> np.ndarray:
        return np.stack([s[start + k:start + k + count] for k in horizons], axis=-1)

    train_inputs = s[:n_train].copy()
    train_targets = targets(0, n_train)
    starts = [n_train + j * section_length for j in range(sections)]
    test_inputs = np.stack([s[st:st + section_length] for st in starts])
    test_targets = np.stack([targets(st, section_length) for st in starts])
    return MackeyGlassTask(train_inputs, train_targets, test_inputs, test_targets, horizons,
                           s[:n_samples - washout].copy(), sample_dt)


def mse(prediction: np.ndarray, target: np.ndarray, axis=None) -> np.ndarray | float:
    """Mean squared error over ``axis`` (None = all)."""
    err = np.asarray(prediction, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return np.mean(err ** 2, axis=axis)


def nmse(prediction: np.ndarray, target: np.ndarray, axis=None) -> np.ndarray | float:
    """MSE divided by the variance of the target over the same ``axis``."""
    target = np.asarray(target, dtype=np.float64)
    return mse(prediction, target, axis) / np.var(target, axis=axis)
