"""A known noisy leaky nonlinear map, as a :class:`nado.data.dataset.Dataset`: ground truth for tests.

    m(t+1) = m(t) + alpha * (tanh(gain * u(t) + bias + feedback * m(t)) - m(t))
             + sigma(m, u) * xi(t),         u = (s - 40) / 20 for s in [0, 80] (Oe-like)
    sigma(m, u) = noise * (0.5 + (1 - tanh(...)**2))    (noisier in the steep middle)

The observable is ``x = m``; ``xi`` is white Gaussian. ``noise=0`` gives the deterministic map.
Resets draw ``m`` from N(-0.8, reset_std). Arrays are float64, like a collected dataset.
"""
from __future__ import annotations

import numpy as np

from nado.data.dataset import Dataset

LO, HI = 0.0, 80.0


def leaky_map(s: np.ndarray, m0: np.ndarray, *, alpha: float = 0.35, gain: float = 1.5,
              bias: float = 0.2, feedback: float = 0.8, noise: float = 0.0,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Drive the map: s (B, T, 1) inputs, m0 (B, 1) -> (B, T, 1) observables after each input."""
    rng = rng or np.random.default_rng(0)
    m = np.asarray(m0, dtype=np.float64).copy()
    out = np.empty(s.shape, dtype=np.float64)
    for t in range(s.shape[1]):
        u = (s[:, t] - 40.0) / 20.0
        target = np.tanh(gain * u + bias + feedback * m)
        step = m + alpha * (target - m)
        if noise:
            step = step + noise * (0.5 + (1 - target ** 2)) * rng.standard_normal(m.shape)
        m = step
        out[:, t] = m
    return out


def make_dataset(*, sequences: int = 1000, length: int = 20, repeats: tuple[int, int] = (40, 20),
                 noise: float = 0.05, reset_std: float = 0.05, seed: int = 0, **params) -> Dataset:
    """Dynamics set (sequences x length), repeats set (M x R), reset distribution (500 samples)."""
    rng = np.random.default_rng(seed)
    reset = lambda *shape: -0.8 + reset_std * rng.standard_normal(shape + (1,))  # noqa: E731
    s = rng.uniform(LO, HI, (sequences, length, 1))
    x0 = reset(sequences)
    x = leaky_map(s, x0, noise=noise, rng=rng, **params)
    m, r = repeats
    rs = rng.uniform(LO, HI, (m, length, 1))
    r0 = reset(m, r)
    rx = leaky_map(np.repeat(rs, r, 0), r0.reshape(m * r, 1), noise=noise, rng=rng, **params)
    return Dataset(dynamics_inputs=s, dynamics_outputs=x, dynamics_initial=x0,
                   repeats_inputs=rs, repeats_outputs=rx.reshape(m, r, length, 1),
                   repeats_initial=r0, reset_initial=reset(500),
                   active_lo=np.array([LO]), active_hi=np.array([HI]),
                   attrs={"rig": "synthetic leaky map", "noise": noise, "seed": seed})
