"""Twin metrics on synthetic arrays with known answers, and the report on a tiny twin."""
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from nado.errors import DatasetError
from nado.twin.metrics import (autocorrelation, default_horizons, nrmse_by_horizon, repeat_metrics,
                               wasserstein1)


def ar1(rng, M, R, T, C, phi=0.6, sd=1.0, mean=None):
    """Repeats around a per-(sequence, step) mean with AR(1) noise of stationary std ``sd``."""
    if mean is None:
        mean = np.zeros((M, 1, T, C))
    e = np.zeros((M, R, T, C))
    e[:, :, 0] = rng.normal(0, sd, (M, R, C))
    for t in range(1, T):
        e[:, :, t] = phi * e[:, :, t - 1] + np.sqrt(1 - phi ** 2) * rng.normal(0, sd, (M, R, C))
    return mean + e


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 37)), rng.exponential(size=(6, 50))
    ours = wasserstein1(a, b)
    ref = [wasserstein_distance(a[i], b[i]) for i in range(6)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert wasserstein1(np.array([[0.0, 1.0]]), np.array([[5.0]]))[0] == pytest.approx(4.5)
    with pytest.raises(DatasetError):
        wasserstein1(np.zeros((2, 3)), np.zeros((3, 3)))


def test_identical_distributions():
    rng = np.random.default_rng(1)
    mean = rng.normal(0, 3, (20, 1, 15, 2))
    dev = ar1(rng, 20, 200, 15, 2, mean=mean)
    twin = ar1(rng, 20, 200, 15, 2, mean=mean)
    m = repeat_metrics(dev, twin)
    assert m["std_ratio"] == pytest.approx(1.0, abs=0.03)
    assert m["w1"] < 0.05           # sampling floor with 200 samples each, in units of sigma
    assert m["mean_error"] < 0.05
    assert m["autocov_error"] < 0.03
    same = repeat_metrics(dev, dev)
    assert same["w1"] == 0 and same["mean_error"] == 0 and same["std_ratio"] == 1.0
    assert same["autocov_error"] == 0


def test_scaled_noise_and_shifted_mean():
    rng = np.random.default_rng(2)
    mean = rng.normal(0, 3, (10, 1, 12, 1))
    dev = ar1(rng, 10, 300, 12, 1, mean=mean)
    for scale in (0.5, 2.0):
        twin = mean + scale * (ar1(rng, 10, 300, 12, 1))
        assert repeat_metrics(dev, twin)["std_ratio"] == pytest.approx(scale, rel=0.04)
    sigma = dev.std()
    shifted = dev + 0.5 * sigma
    m = repeat_metrics(dev, shifted)
    assert m["mean_error"] == pytest.approx(0.5)
    assert m["w1"] == pytest.approx(0.5)       # W1 of a shift is the shift
    assert m["std_ratio"] == pytest.approx(1.0)


def test_deterministic_twin_and_autocorrelation():
    rng = np.random.default_rng(3)
    mean = rng.normal(0, 1, (8, 1, 10, 1))
    dev = ar1(rng, 8, 400, 10, 1, phi=0.8, mean=mean)
    acf = autocorrelation(dev)[:, 0]
    np.testing.assert_allclose(acf[:3], [0.8, 0.64, 0.512], atol=0.04)
    ode = dev.mean(axis=1, keepdims=True)       # the exact mean, no spread
    m = repeat_metrics(dev, ode)
    assert m["std_ratio"] == 0.0 and m["mean_error"] == 0.0
    assert m["autocov_error"] == pytest.approx(np.abs(acf).mean())
    # W1 of a point mass at the mean = mean absolute deviation = sqrt(2/pi) sigma for a Gaussian
    assert m["w1"] == pytest.approx(np.sqrt(2 / np.pi) * 1.0 / dev.std(), rel=0.08)
    white = ar1(rng, 8, 400, 10, 1, phi=0.0, mean=mean)
    assert repeat_metrics(dev, white)["autocov_error"] > 0.3


def test_nrmse_by_horizon():
    target = np.zeros((50, 20, 1))
    pred = np.zeros((50, 20, 1))
    pred[:, 4] = 0.3
    out = nrmse_by_horizon(pred, target, [1, 5, 20, 50], np.array([1.0]))
    assert out == {"1": 0.0, "5": pytest.approx(0.3), "20": 0.0}
    assert default_horizons(20) == [1, 2, 5, 10, 20]
    assert default_horizons(7) == [1, 2, 5, 7]


def _tiny_twin(kind):
    import torch

    from nado.twin import Twin, TwinConfig
    torch.manual_seed(0)
    cfg = TwinConfig(kind=kind, n_in=1, n_obs=1, n_delay=1, n_aux=2 if kind == "sde" else 0,
                     width=8, depth=1, input_lo=(0.0,), input_hi=(80.0,), obs_mean=(0.0,),
                     obs_std=(1.0,), n_reset=3)
    return Twin(cfg, reset_samples=np.array([[-0.1], [0.0], [0.1]]))


def test_write_report_files_and_keys(tmp_path):
    import json

    from nado.data.dataset import Dataset
    from nado.twin.report import KEYS, write_report
    rng = np.random.default_rng(0)
    N, M, R, T = 40, 30, 10, 8
    ds = Dataset(dynamics_inputs=rng.uniform(0, 80, (N, T, 1)), dynamics_outputs=rng.normal(size=(N, T, 1)),
                 dynamics_initial=rng.normal(size=(N, 1)), repeats_inputs=rng.uniform(0, 80, (M, T, 1)),
                 repeats_outputs=rng.normal(size=(M, R, T, 1)), repeats_initial=rng.normal(size=(M, R, 1)),
                 reset_initial=rng.normal(size=(5, 1)), active_lo=np.zeros(1), active_hi=np.full(1, 80.0))
    twins = {"ode": _tiny_twin("ode"), "sde": _tiny_twin("sde")}
    res = write_report(twins, ds, tmp_path, samples=20)
    saved = json.loads((tmp_path / "twin_report.json").read_text())
    assert set(saved) == {"ode", "sde"} and saved == json.loads(json.dumps(res["twins"]))
    for kind in ("ode", "sde"):
        assert tuple(saved[kind]) == KEYS
        assert list(saved[kind]["nrmse_by_horizon"]) == ["1", "2", "5", "8"]
    assert saved["ode"]["std_ratio"] == 0.0 and saved["sde"]["std_ratio"] > 0
    for key in ("repeats_png", "error_png"):
        assert (tmp_path / res["files"][key].split("/")[-1]).stat().st_size > 10_000
    details = json.loads((tmp_path / "twin_report_details.json").read_text())
    assert details["n_sequences"] == 3 and "ode" in details["dynamics_nrmse_by_horizon"]
    # a twin of another rig is refused with a clear message
    from nado.errors import ConfigError
    with pytest.raises(ConfigError, match="given as 'sde'"):
        write_report({"sde": _tiny_twin("ode")}, ds, tmp_path / "x", figures=False)
