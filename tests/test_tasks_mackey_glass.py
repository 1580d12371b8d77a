"""Mackey-Glass: the RK4 series against an independent integration, the task split, metrics."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from nado.tasks import mackey_glass as MG


def reference_series(n_samples: int, sample_dt=2.0) -> np.ndarray:
    """Method of steps: scipy's DOP853 over [j tau, (j+1) tau], the delayed term read
    from the previous interval's dense output (constant history x0 before t = 0)."""
    a, b, tau, n, x0 = MG.A, MG.B, MG.TAU, MG.N_EXP, MG.X0
    t_end = sample_dt * (n_samples - 1)
    pieces: list = []

    def history(t):
        if t <= 0:
            return x0
        j = min(int(t // tau), len(pieces) - 1)
        return pieces[j](t)[0]

    t0, y0 = 0.0, x0
    while t0 < t_end:
        t1 = min(t0 + tau, t_end)
        sol = solve_ivp(lambda t, y: [a * history(t - tau) / (1 + history(t - tau) ** n) - b * y[0]],
                        (t0, t1), [y0], method="DOP853", rtol=1e-11, atol=1e-12, dense_output=True)
        pieces.append(sol.sol)
        t0, y0 = t1, sol.y[0, -1]
    return np.array([x0] + [history(sample_dt * i) for i in range(1, n_samples)])


def test_series_matches_independent_integration():
    ours = MG.mackey_glass(300)
    ref = reference_series(300)
    # fourth order: about 4e-8 apart at dt_fine = 0.1 over 600 time units (chaos grows it later)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    assert 0.4 < ours[50:].min() and ours[50:].max() < 1.4  # the familiar attractor band


def test_refining_the_step_converges():
    coarse, fine = MG.mackey_glass(200, dt_fine=0.2), MG.mackey_glass(200, dt_fine=0.1)
    finer = MG.mackey_glass(200, dt_fine=0.05)
    e1, e2 = np.abs(coarse - finer).max(), np.abs(fine - finer).max()
    assert e2 < e1 / 8  # fourth-order convergence gives ~16x; second order would give ~4x


def test_task_layout_and_targets():
    task = MG.make_mackey_glass_task()
    assert task.train_inputs.shape == (1000,) and task.train_targets.shape == (1000, 10)
    assert task.test_inputs.shape == (10, 400) and task.test_targets.shape == (10, 400, 10)
    assert task.series.shape == (5000,)
    np.testing.assert_array_equal(task.horizons, np.arange(1, 11))
    s = task.series
    np.testing.assert_array_equal(task.train_targets[:, 4], s[5:1005])  # t+5
    np.testing.assert_array_equal(task.test_inputs[3], s[1000 + 1200:1000 + 1600])
    np.testing.assert_array_equal(task.test_targets[2, :395, 0], task.test_inputs[2, 1:396])
    # the last section's far targets come from the continuation, not from wrapping around
    assert task.test_targets[-1, -1, -1] != task.test_inputs[0, 9]
    with pytest.raises(ValueError, match="exceeds"):
        MG.make_mackey_glass_task(n_samples=2000)


def test_metrics():
    t = np.array([[0.0, 2.0], [1.0, 3.0]])
    p = t + 0.5
    assert MG.mse(p, t) == pytest.approx(0.25)
    assert MG.nmse(p, t) == pytest.approx(0.25 / np.var(t))
    np.testing.assert_allclose(MG.mse(p, t, axis=0), [0.25, 0.25])
    np.testing.assert_allclose(MG.nmse(t.mean() + 0 * t, t), 1.0)  # predicting the mean: NMSE 1
