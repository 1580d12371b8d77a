"""Transfer through the bus, RC baseline, cascade, variants - on LeakyRig and the toy twin."""
import uuid

import numpy as np
import pytest
import torch

from bridge.backends.testrigs import LeakyRig
from nado.errors import ConfigError
from nado.network import Network, TrainConfig, train_network
from nado.network.baselines import matched_random_network, reservoir_baseline, ridge_fit
from nado.network.cascade import run_cascade
from nado.network.toytwin import ToyTwin
from nado.network.transfer import transfer, transfer_metrics
from nado.network.variants import run_variants


def _rig(seed=0, **kw):
    return LeakyRig("leaky", n_in=1, n_out=1, lo=0.0, hi=1.0, leak=(0.5, 0.5), gain=12.0, seed=seed, **kw)


def _twin(**kw):
    """The toy twin of _rig(): LeakyRig's one-channel map (centre 0, gain G * w)."""
    rig = _rig()
    base = dict(centre=0.0, gain=float(rig.gain * rig.w[0, 0]), rate=0.5, noise_std=0.05, init_std=0.05,
                obs_mean=0.4, obs_std=0.3)
    return ToyTwin(**{**base, **kw})


@pytest.fixture
def served():
    """A LeakyRig behind an in-process RigServer, and a client to it."""
    from bridge import RigClient, RigServer
    rig = _rig()
    endpoint = f"inproc://network-test-{uuid.uuid4().hex[:8]}"
    with RigServer({"leaky": rig}, endpoint) as server:
        server.start()
        with RigClient(endpoint, "leaky", timeout_s=20.0) as client:
            yield rig, client


def _blob_task(n_train=200, n_test=100, T=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, 5))
    y = rng.integers(0, 3, n_train + n_test)
    x = centres[y][:, None, :] + 0.5 * rng.normal(0, 1, (len(y), T, 5))
    x = x.astype(np.float32)
    return dict(kind="classification", x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                y_test=y[n_train:], n_classes=3)


def _sine_task(T=60, horizons=(1, 3)):
    t = np.arange(T + max(horizons) + 10)
    s = 0.5 + 0.4 * np.sin(0.35 * t) * np.cos(0.05 * t)
    x = s[None, :T, None].astype(np.float32)
    y = np.stack([s[h:h + T] for h in horizons], -1)[None].astype(np.float32)
    return dict(kind="regression", x_train=x, y_train=y, x_test=x, y_test=y, horizons=horizons, washout=5)


def test_transfer_one_batched_drive_per_layer(served):
    rig, client = served
    net = Network([_twin(), _twin()], [6, 4], 5, 3, seed=0)
    x = np.random.default_rng(0).normal(size=(7, 4, 5)).astype(np.float32)
    before = rig.drive_calls
    res = transfer(net, [client, client], x, seed=1)
    assert rig.drive_calls - before == 2 and res.drives == [1, 1]
    assert res.outputs.shape == (7, 4, 3)
    assert [a.shape for a in res.activities] == [(7, 4, 6), (7, 4, 4)]
    assert [s.shape for s in res.inputs] == [(7, 4, 6, 1), (7, 4, 4, 1)]
    assert res.observables[0].shape == (7, 6, 4, 1)
    assert all(0.0 <= s.min() and s.max() <= 1.0 for s in res.inputs)
    # pi used the twin's constants: activities = (observable - mean) / std
    np.testing.assert_allclose(res.activities[1][:, :, 2], (res.observables[1][:, 2, :, 0] - 0.4) / 0.3, rtol=1e-5)
    again = transfer(net, [client, client], x, seed=1)
    np.testing.assert_allclose(again.outputs, res.outputs)   # same seed, same outputs
    chunked = transfer(net, [client, client], x, seed=None, max_batch=20)
    assert chunked.drives == [3, 2]


def test_transfer_refuses_mismatched_rig():
    net = Network([_twin(n_obs=2)], [3], 2, 2)
    with pytest.raises(ConfigError, match="n_obs"):
        transfer(net, [_rig()], np.zeros((2, 3, 2), np.float32))


def test_transfer_metrics_side_by_side(served):
    _, client = served
    task = _blob_task()
    cfg = TrainConfig(nodes=(8,), epochs=4, batch_size=32, lr=5e-2, progress=False)
    net, _ = train_network([_twin(noise_std=0.05)], task, cfg, seed=0)
    res, raw = transfer_metrics(net, [client], task, cfg, seed=0)
    assert set(res) >= {"sim", "transfer", "drives"}
    assert res["sim"]["accuracy"] > 0.6 and res["transfer"]["accuracy"] > 0.5, res


def test_transfer_splits_drives_to_the_servers_size_limit():
    """A server that refuses drives above ``max_drive_elements`` says so in describe(); transfer
    splits its drives to fit (the EMG scenario at 27 subjects needed this), with the same result as
    one drive when the rig is noise-free."""
    from bridge import RigClient, RigServer
    task = _blob_task(n_train=60, n_test=40)
    cfg = TrainConfig(nodes=(8,), epochs=1, batch_size=32, lr=5e-2, progress=False)
    net, _ = train_network([_twin(noise_std=0.05)], task, cfg, seed=0)
    out = {}
    for name, limit in (("whole", None), ("split", 80 * 4)):   # 80 sequences of 4 steps per drive
        endpoint = f"inproc://split-{name}-{uuid.uuid4().hex[:8]}"
        opts = {} if limit is None else {"max_drive_elements": limit}
        rig = LeakyRig("leaky", n_in=1, n_out=1, lo=0.0, hi=1.0, leak=(0.5, 0.5), gain=12.0, seed=0,
                       noise=0.0, readout_noise=0.0, reset_noise=0.0)
        with RigServer({"leaky": rig}, endpoint, **opts) as server:
            server.start()
            with RigClient(endpoint, "leaky", timeout_s=20.0) as client:
                if limit is not None:
                    assert client.describe()["max_drive_elements"] == limit
                out[name] = transfer(net, [client], task["x_test"], seed=0)
    assert out["split"].drives == [4] and out["whole"].drives == [1]     # 40 images x 8 nodes / 80
    np.testing.assert_allclose(out["split"].outputs, out["whole"].outputs, rtol=1e-6)


def test_ridge_readout_and_rc_baseline():
    rng = np.random.default_rng(0)
    F_ = rng.normal(size=(300, 6))
    Y = F_ @ rng.normal(size=(6, 2)) + 0.3
    W, b, alpha = ridge_fit(F_, Y, classification=False)
    np.testing.assert_allclose(F_ @ W.T + b, Y, atol=1e-2)
    task = _blob_task()
    cfg = TrainConfig(nodes=(8, 6), epochs=2, batch_size=32, lr=5e-2, progress=False)
    trained, _ = train_network([_twin(), _twin()], task, cfg, seed=0)
    rand = matched_random_network(trained, seed=3)
    for a, b_ in zip(rand.weights[:-1], trained.weights[:-1]):
        assert abs(float(a.detach().std()) - float(b_.detach().std())) < 0.25 * float(b_.detach().std())
    rig = _rig()
    rc = reservoir_baseline(trained, task, cfg, clients_by_layer=[rig, rig], seed=0)
    assert rc["sim"]["accuracy"] > 0.5 and rc["transfer"]["accuracy"] > 0.5, rc
    single = reservoir_baseline(trained, task, cfg, clients_by_layer=[rig], single_layer=True, seed=0)
    assert single["sim"]["accuracy"] > 0.5


@pytest.mark.e2e
def test_cascade_two_layers_on_tiny_regression():
    task = _sine_task()
    cfg = TrainConfig(nodes=(6, 6), epochs=10, tbptt=10, burn_in=5, segments_per_epoch=64, batch_size=16,
                      lr=0.1, progress=False, val_fraction=0.0)
    rig = _rig(noise=0.01, readout_noise=0.005)
    twins = [_twin(noise_std=0.01), _twin(noise_std=0.01)]
    before = rig.drive_calls
    net, info = run_cascade(twins, [rig, rig], task, cfg, seed=0, readout="twin")
    assert rig.drive_calls - before == 1 and info["drives"] == [1]     # layer 1 recorded once
    assert len(info["histories"]) == 2 and net.n_nodes == [6, 6]
    before = rig.drive_calls
    net_r, info_r = run_cascade(twins, [rig, rig], task, cfg, seed=0)   # readout="ridge"
    assert rig.drive_calls - before == 2 and info_r["drives"] == [1, 1]  # layer 2 recorded for the readout
    assert info_r["readout"] == "ridge" and info_r["alpha"] > 0
    torch.testing.assert_close(net_r.weights[0], net.weights[0])        # same layers, new readout
    assert not torch.allclose(net_r.weights[-1], net.weights[-1])
    res = run_variants(task, cfg, sde_twins=twins, clients_by_layer=[rig, rig], variants=["direct", "cascade"])
    for v in ("direct", "cascade"):
        m = res[v]["transfer"]
        assert set(m) >= {"mse", "nmse", "mse_by_horizon"} and np.isfinite(m["mse"])
        assert set(m["mse_by_horizon"]) == {"1", "3"}
        assert m["nmse"] < 1.0, (v, m)          # better than predicting the mean


def test_run_variants_layout():
    task = _blob_task(n_train=120, n_test=60)
    cfg = TrainConfig(nodes=(6,), epochs=2, batch_size=32, lr=5e-2, progress=False)
    rig = _rig()
    out = run_variants(task, cfg, sde_twins=[_twin(noise_std=0.1)], ode_twins=[_twin(kind="ode")],
                       clients_by_layer=[rig], seed=0)
    assert set(out) == {"sde", "ode", "rc", "mlp", "leaky"}
    for v in ("sde", "ode", "rc"):
        assert 0 <= out[v]["sim"]["accuracy"] <= 1 and 0 <= out[v]["transfer"]["accuracy"] <= 1
    assert out["mlp"]["transfer"] is None and "loss" in out["leaky"]["history"]
