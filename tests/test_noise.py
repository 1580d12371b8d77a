"""Property tests of the noise sources (emulator/noise.py).

Tolerances: autocorrelation and variance estimates from n samples of an OU
process have a standard error of roughly sqrt(2 tau_steps / n); with n = 200,000
samples per batch element and tau <= 20 steps that is <= 0.015, so we allow
0.05 (absolute, on the normalised autocorrelation) and 10 % on the variance.
The 1/f slope is fitted on log-binned Welch spectra over 2.5 decades and must
lie within -1 +- 0.2.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.signal import welch

from emulator.errors import EmulatorError, NoiseParamError
from emulator.noise import (OUBank, PinkNoise, RandomWalkDrift, WhiteNoise, make_rng, pink_taus,
                            population_switch)

FAST = settings(max_examples=8, deadline=None)


def acf(x: np.ndarray, k: int) -> float:
    x = x - x.mean(axis=-1, keepdims=True)
    return float((x[..., :-k] * x[..., k:]).mean() / (x * x).mean())


@FAST
@given(tau_steps=st.floats(0.5, 20.0), sigma=st.floats(0.1, 5.0), seed=st.integers(0, 2**31))
def test_ou_autocorrelation_and_stationary_variance(tau_steps, sigma, seed):
    dt = 0.01
    bank = OUBank([tau_steps * dt], sigma, dt, shape=(4,), seed=seed)
    x = bank.sample(50_000)                                   # (4, n): 200k samples in all
    var = float(x.var())
    assert abs(var / sigma**2 - 1) < 0.10, (var, sigma**2)
    for k in (1, 2, 5):
        assert abs(acf(x, k) - math.exp(-k / tau_steps)) < 0.05, (k, acf(x, k), tau_steps)


@FAST
@given(seed=st.integers(0, 2**31), n1=st.integers(1, 50))
def test_stream_continues_across_calls(seed, n1):
    """Sampling n1 then n2 steps gives exactly the same path as one call drawing the same numbers."""
    a = OUBank([0.05, 2.0], [1.0, 0.5], 0.01, shape=(3,), seed=seed)
    b = OUBank([0.05, 2.0], [1.0, 0.5], 0.01, shape=(3,), seed=seed)
    assert np.array_equal(a.state, b.state)
    xa = a.sample(n1)
    xb = b.sample(n1)
    assert np.array_equal(xa, xb)
    # the state carries on: the next sample is correlated with the last one
    long = OUBank([5.0], 1.0, 0.01, shape=(2000,), seed=seed)
    last = long.sample(1)[:, -1]
    nxt = long.sample(1)[:, 0]
    assert np.corrcoef(last, nxt)[0, 1] > 0.95


@FAST
@given(seed=st.integers(0, 2**31))
def test_same_seed_same_stream_different_seeds_differ(seed):
    for make in (lambda s: WhiteNoise(1.0, (5,), seed=s),
                 lambda s: OUBank([0.1, 1.0], 1.0, 0.01, (5,), seed=s),
                 lambda s: PinkNoise(1.0, 0.01, 0.01, 10.0, (5,), seed=s),
                 lambda s: RandomWalkDrift(0.5, 0.01, (5,), seed=s)):
        x1, x2, y = make(seed).sample(64), make(seed).sample(64), make(seed + 1).sample(64)
        assert np.array_equal(x1, x2)
        assert not np.allclose(x1, y)
    r1 = population_switch(make_rng(seed), np.full(100, 50), 0.3)
    r2 = population_switch(make_rng(seed), np.full(100, 50), 0.3)
    assert np.array_equal(r1, r2)


def test_pink_noise_spectral_slope_is_minus_one_over_two_decades():
    dt = 1.0
    src = PinkNoise(1.0, dt, tau_min_s=0.3, tau_max_s=3e4, shape=(2,), per_decade=2, seed=7)
    x = src.sample(2**17)
    f, p = welch(x, fs=1 / dt, nperseg=2**15, axis=-1)
    p = p.mean(axis=0)
    edges = np.logspace(math.log10(3e-4), math.log10(1e-1), 16)      # 2.5 decades
    centres, powers = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (f >= lo) & (f < hi)
        if sel.any():
            centres.append(math.log10(f[sel].mean()))
            powers.append(math.log10(p[sel].mean()))
    slope = np.polyfit(centres, powers, 1)[0]
    assert -1.2 < slope < -0.8, slope


def test_white_noise_is_white_and_has_sigma():
    x = WhiteNoise(2.0, (10,), seed=1).sample(20_000)
    assert abs(x.std() / 2.0 - 1) < 0.02
    assert abs(acf(x, 1)) < 0.02


def test_random_walk_drift_variance_grows_linearly():
    d = RandomWalkDrift(1.0, 0.5, shape=(4000,), rate_per_s=0.2, seed=3)
    path = d.sample(40)                                  # 20 s
    assert abs(path[:, -1].var() / 20.0 - 1) < 0.1       # sigma^2 t
    assert abs(path[:, -1].mean() - 4.0) < 0.15          # rate t


def test_advance_decorrelates_like_exp():
    bank = OUBank([1.0], 1.0, 0.01, shape=(20_000,), seed=5)
    before = bank.state[:, 0].copy()
    bank.advance(1.0)
    assert abs(np.corrcoef(before, bank.state[:, 0])[0, 1] - math.exp(-1)) < 0.03
    assert abs(bank.state.var() - 1) < 0.05


def test_population_switch_is_binomial():
    rng = make_rng(0)
    k = population_switch(rng, np.full(50_000, 40), 0.25)
    assert abs(k.mean() - 10) < 0.05 and abs(k.var() - 7.5) < 0.2
    assert np.all(population_switch(rng, np.full(10, 7), 1.0) == 7)
    assert np.all(population_switch(rng, np.full(10, 7), 0.0) == 0)


@pytest.mark.parametrize("make", [
    lambda: OUBank([-1.0], 1.0, 0.01),
    lambda: OUBank([0.0], 1.0, 0.01),
    lambda: OUBank([1.0], -1.0, 0.01),
    lambda: OUBank([float("nan")], 1.0, 0.01),
    lambda: OUBank([1.0], float("nan"), 0.01),
    lambda: OUBank([1.0], 1.0, -0.01),
    lambda: OUBank([1.0, 2.0], [1.0, 1.0, 1.0], 0.01),
    lambda: WhiteNoise(-0.5),
    lambda: WhiteNoise(float("nan")),
    lambda: PinkNoise(1.0, 0.01, 1.0, 0.1),
    lambda: PinkNoise(-1.0, 0.01, 0.1, 1.0),
    lambda: RandomWalkDrift(-1.0, 0.1),
    lambda: RandomWalkDrift(1.0, 0.1, rate_per_s=float("nan")),
    lambda: pink_taus(float("nan"), 1.0),
    lambda: population_switch(make_rng(0), [5], 1.5),
    lambda: population_switch(make_rng(0), [5], float("nan")),
    lambda: population_switch(make_rng(0), [-5], 0.5),
    lambda: OUBank([1.0], 1.0, 0.01).advance(-1.0),
    lambda: make_rng(-3),
])
def test_invalid_parameters_raise_value_error(make):
    with pytest.raises(NoiseParamError) as info:
        make()
    assert isinstance(info.value, ValueError) and isinstance(info.value, EmulatorError)


@FAST
@given(sigma=st.floats(-1e6, -1e-9) | st.just(float("nan")), tau=st.floats(-1e6, 0.0))
def test_invalid_parameters_property(sigma, tau):
    with pytest.raises(ValueError):
        OUBank([1.0], sigma, 0.01)
    with pytest.raises(ValueError):
        OUBank([tau], 1.0, 0.01)
