"""Noise building blocks shared by the emulated rigs: seeded, vectorised, stateful.

Every source draws from its own :class:`numpy.random.Generator` (``seed`` int,
``None`` for fresh entropy, or a Generator) and holds a state array of a batch
shape ``shape`` (e.g. ``(B,)`` experiments or ``(B, K)`` channels), so a stream
continues across calls (and across drives with ``reset=False``) exactly as one
long stream would. Time runs along a new trailing axis of ``n`` steps of ``dt_s``
seconds; no Python loop runs over batch elements or time steps (the recursions
are :func:`scipy.signal.lfilter` calls along the time axis).

Sources (each ``sample(n) -> (*shape, n)``):

- :class:`WhiteNoise`: i.i.d. Gaussian, std ``sigma``.
- :class:`OUBank`: a sum of Ornstein-Uhlenbeck processes with time constants
  ``taus_s`` and stationary stds ``sigmas``, integrated exactly:
  ``x[k+1] = a x[k] + sigma sqrt(1 - a^2) xi``, ``a = exp(-dt/tau)``; so the
  autocorrelation at lag k of one component is ``exp(-k dt / tau)`` and its
  stationary variance is ``sigma^2``. :meth:`OUBank.advance` lets the bank evolve
  over an idle gap (a reset, a request overhead) without sampling.
- :func:`pink_bank` / :class:`PinkNoise`: an OU bank with time constants
  log-spaced over decades and equal variances, whose power spectrum is ~1/f
  between ``1/(2 pi tau_max)`` and ``1/(2 pi tau_min)`` (a superposition of
  Lorentzians with a log-uniform distribution of relaxation times; Dutta & Horn,
  Rev. Mod. Phys. 53, 497 (1981)).
- :class:`RandomWalkDrift`: slow drift, ``x += rate dt + sigma sqrt(dt) xi``.
- :func:`population_switch`: binomial population noise, the number of ``n``
  independent units that switch with probability ``p``.

Invalid parameters (negative or NaN sigma, non-positive tau or dt) raise
:class:`emulator.errors.NoiseParamError` (a ``ValueError``).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from scipy.signal import lfilter

from .errors import NoiseParamError

SeedLike = "int | None | np.random.Generator"
SAMPLE_BLOCK_ELEMENTS = 1 << 20   # OUBank.sample draws at most this many normals at a time


def make_rng(seed) -> np.random.Generator:
    """A Generator from an int seed, ``None`` (fresh entropy) or an existing Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or int(seed) < 0):
        raise NoiseParamError(f"seed must be a non-negative int or None, got {seed!r}")
    return np.random.default_rng(None if seed is None else int(seed))


def _check_sigma(name: str, value) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise NoiseParamError(f"{name} must be finite and >= 0, got {value!r}")
    return arr


def _check_positive(name: str, value) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise NoiseParamError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def _shape(shape) -> tuple[int, ...]:
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise NoiseParamError(f"shape must hold non-negative sizes, got {shape}")
    return shape


class WhiteNoise:
    """I.i.d. Gaussian noise of std ``sigma`` over a batch ``shape``."""

    def __init__(self, sigma: float, shape=(), *, seed=None):
        self.sigma = float(_check_sigma("sigma", sigma)[0])
        self.shape = _shape(shape)
        self.rng = make_rng(seed)

    def sample(self, n: int) -> np.ndarray:
        """``(*shape, n)`` samples."""
        return self.sigma * self.rng.standard_normal(self.shape + (int(n),))


class OUBank:
    """Sum of independent Ornstein-Uhlenbeck processes, exact discretisation.

    taus_s: time constants, seconds (each > 0). sigmas: stationary stds (>= 0),
    one per tau or one for all. dt_s: sample interval, seconds. shape: batch shape.
    The state ``(*shape, n_tau)`` starts stationary (drawn from N(0, sigma^2)).
    """

    def __init__(self, taus_s: Iterable[float], sigmas, dt_s: float, shape=(), *, seed=None):
        self.taus_s = _check_positive("tau", list(np.atleast_1d(taus_s)))
        sig = _check_sigma("sigma", sigmas)
        if sig.size == 1:
            sig = np.full(self.taus_s.size, sig[0])
        if sig.size != self.taus_s.size:
            raise NoiseParamError(f"sigmas has {sig.size} entries but taus_s has {self.taus_s.size}; "
                                  "give one sigma per tau or a single sigma")
        self.sigmas = sig
        self.dt_s = float(_check_positive("dt_s", dt_s)[0])
        self.rng = make_rng(seed)
        self.reset(shape)

    @property
    def variance(self) -> float:
        """Stationary variance of the sum."""
        return float(np.sum(self.sigmas ** 2))

    def reset(self, shape=None) -> None:
        """Redraw the state from the stationary distribution (new batch ``shape`` if given)."""
        if shape is not None:
            self.shape = _shape(shape)
        self.state = self.rng.standard_normal(self.shape + (self.taus_s.size,)) * self.sigmas

    def advance(self, duration_s: float) -> None:
        """Let the processes evolve over an idle gap of ``duration_s`` seconds (unsampled)."""
        if not math.isfinite(duration_s) or duration_s < 0:
            raise NoiseParamError(f"duration_s must be finite and >= 0, got {duration_s!r}")
        a = np.exp(-duration_s / self.taus_s)
        self.state = a * self.state + self.sigmas * np.sqrt(1 - a * a) * \
            self.rng.standard_normal(self.state.shape)

    def sample_components(self, n: int) -> np.ndarray:
        """``(*shape, n_tau, n)``: each component's path over the next ``n`` steps."""
        n = int(n)
        a = np.exp(-self.dt_s / self.taus_s)
        xi = self.rng.standard_normal(self.shape + (self.taus_s.size, n))
        out = np.empty_like(xi)
        for j in range(self.taus_s.size):          # a handful of components, not a batch loop
            b = self.sigmas[j] * math.sqrt(1 - a[j] * a[j])
            zi = a[j] * self.state[..., j][..., None]
            out[..., j, :], _ = lfilter([b], [1.0, -a[j]], xi[..., j, :], axis=-1, zi=zi)
        if n:
            self.state = out[..., -1].copy()
        return out

    def sample(self, n: int) -> np.ndarray:
        """``(*shape, n)``: the bank's sum over the next ``n`` steps.

        Equal, bit for bit, to ``sample_components(n).sum(axis=-2)``, but computed a block of
        batch rows at a time (the normals are drawn in the same order, and the components are
        added in the same order), so memory stays near the ``(*shape, n)`` result instead of
        ``2 * n_tau`` times it.
        """
        n = int(n)
        K = self.taus_s.size
        rows = int(np.prod(self.shape, dtype=np.int64))
        a = np.exp(-self.dt_s / self.taus_s)
        gain = self.sigmas * np.sqrt(1 - a * a)
        state = self.state.reshape(rows, K)
        new_state = np.empty_like(state)
        out = np.zeros((rows, n))
        block = max(1, SAMPLE_BLOCK_ELEMENTS // max(K * n, 1))
        for r0 in range(0, rows, block):
            r1 = min(rows, r0 + block)
            xi = self.rng.standard_normal((r1 - r0, K, n))   # rows r0..r1 of one (rows, K, n) draw
            acc = out[r0:r1]
            for j in range(K):
                y, _ = lfilter([gain[j]], [1.0, -a[j]], xi[:, j, :], axis=-1, zi=a[j] * state[r0:r1, j][:, None])
                acc += y
                if n:
                    new_state[r0:r1, j] = y[:, -1]
        if n:
            self.state = new_state.reshape(self.shape + (K,))
        return out.reshape(self.shape + (n,))


def pink_taus(tau_min_s: float, tau_max_s: float, per_decade: float = 2.0) -> np.ndarray:
    """Time constants log-spaced from tau_min_s to tau_max_s, ``per_decade`` per decade."""
    lo, hi = _check_positive("tau_min_s", tau_min_s)[0], _check_positive("tau_max_s", tau_max_s)[0]
    if hi < lo:
        raise NoiseParamError(f"tau_max_s ({hi}) must be >= tau_min_s ({lo})")
    per = _check_positive("per_decade", per_decade)[0]
    n = max(1, int(round(math.log10(hi / lo) * per)) + 1)
    return np.logspace(math.log10(lo), math.log10(hi), n)


class PinkNoise(OUBank):
    """1/f noise: an OU bank with log-spaced taus and equal variances, total std ``sigma``."""

    def __init__(self, sigma: float, dt_s: float, tau_min_s: float, tau_max_s: float,
                 shape=(), *, per_decade: float = 2.0, seed=None):
        taus = pink_taus(tau_min_s, tau_max_s, per_decade)
        total = float(_check_sigma("sigma", sigma)[0])
        super().__init__(taus, total / math.sqrt(taus.size), dt_s, shape, seed=seed)


class RandomWalkDrift:
    """Slow drift: ``x += rate dt + sigma sqrt(dt) xi`` (sigma in units per sqrt(second))."""

    def __init__(self, sigma_per_sqrt_s: float, dt_s: float, shape=(), *, rate_per_s: float = 0.0,
                 seed=None):
        self.sigma = float(_check_sigma("sigma_per_sqrt_s", sigma_per_sqrt_s)[0])
        if not math.isfinite(rate_per_s):
            raise NoiseParamError(f"rate_per_s must be finite, got {rate_per_s!r}")
        self.rate = float(rate_per_s)
        self.dt_s = float(_check_positive("dt_s", dt_s)[0])
        self.shape = _shape(shape)
        self.rng = make_rng(seed)
        self.state = np.zeros(self.shape)

    def sample(self, n: int) -> np.ndarray:
        steps = self.rate * self.dt_s + self.sigma * math.sqrt(self.dt_s) * \
            self.rng.standard_normal(self.shape + (int(n),))
        path = self.state[..., None] + np.cumsum(steps, axis=-1)
        if n:
            self.state = path[..., -1].copy()
        return path


def population_switch(rng: np.random.Generator, n, p) -> np.ndarray:
    """Binomial population noise: how many of ``n`` units switch, each with probability ``p``.

    n: non-negative integer counts (any shape); p: probabilities in [0, 1]
    (broadcastable). Returns int64 counts of the broadcast shape.
    """
    n_arr = np.asarray(n)
    p_arr = np.asarray(p, dtype=np.float64)
    if np.any(n_arr < 0) or (n_arr.dtype.kind == "f" and not np.all(np.isfinite(n_arr))):
        raise NoiseParamError("population sizes n must be finite and >= 0")
    if not np.all(np.isfinite(p_arr)) or np.any(p_arr < 0) or np.any(p_arr > 1):
        raise NoiseParamError("switching probabilities p must lie in [0, 1] (NaN is not allowed)")
    return switch_counts(rng, n_arr.astype(np.int64), p_arr)


def switch_counts(rng: np.random.Generator, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """:func:`population_switch` without the checks, for the rigs' inner loops.

    n: int64 counts, p: float64 probabilities of the same or a broadcastable
    shape. Draws only where the outcome is uncertain (0 < n, 1e-12 < p < 1 - 1e-12):
    elsewhere the count is 0 or n (a binomial truncated at 1e-12 per unit).
    """
    n, p = np.broadcast_arrays(n, p)
    out = np.where(p >= 1 - 1e-12, n, 0)
    live = (p > 1e-12) & (p < 1 - 1e-12) & (n > 0)
    if live.any():
        out[live] = rng.binomial(n[live], p[live])
    return out
