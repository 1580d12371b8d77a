"""Twins refined where the network operates (nado.network.refine) on LeakyRig and a small neural twin."""
import uuid

import numpy as np
import pytest
import torch

from bridge.backends.testrigs import LeakyRig
from nado.errors import ConfigError
from nado.network import TrainConfig, train_network
from nado.network.refine import RefineOptions, collect_uniform, drive_clipped, finetune_twin, refine
from nado.twin import TwinConfig
from nado.twin.model import Twin


class Recording:
    """Client proxy: sums instrument time and keeps the extremes of every input it forwards."""

    def __init__(self, client):
        self.client, self.instrument_s, self.lo, self.hi = client, 0.0, np.inf, -np.inf

    def describe(self):
        return self.client.describe()

    def drive(self, inputs, **kw):
        self.lo, self.hi = min(self.lo, float(np.min(inputs))), max(self.hi, float(np.max(inputs)))
        r = self.client.drive(inputs, **kw)
        self.instrument_s += float(r.instrument_s)
        return r


@pytest.fixture
def client():
    from bridge import RigClient, RigServer
    rig = LeakyRig("leaky", n_in=1, n_out=1, lo=0.0, hi=1.0, leak=(0.5, 0.5), gain=3.0, seed=0)
    endpoint = f"inproc://refine-{uuid.uuid4().hex[:8]}"
    with RigServer({"leaky": rig}, endpoint) as server:
        server.start()
        with RigClient(endpoint, "leaky", timeout_s=20.0) as c:
            yield Recording(c)


def _twin(lo=-0.5, hi=1.5):
    """An untrained neural twin whose active range is WIDER than the rig's 0..1 (so h sends
    inputs the rig refuses unless they are clipped)."""
    torch.manual_seed(0)
    cfg = TwinConfig(kind="ode", n_in=1, n_obs=1, n_delay=2, n_aux=0, width=8, depth=1,
                     input_lo=(lo,), input_hi=(hi,), obs_mean=(0.0,), obs_std=(0.5,))
    return Twin(cfg)


def _task(n_train=48, n_test=24, T=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_train + n_test)
    x = (np.where(y[:, None, None] == 1, 1.5, -1.5) + rng.normal(0, 1, (len(y), T, 2))).astype(np.float32)
    return dict(kind="classification", x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                y_test=y[n_train:], n_classes=2)


def _base(client, n=32, T=8):
    u = np.random.default_rng(1).random((n, T, 1))
    r = drive_clipped(client, u, seed=5)
    return {"dynamics_inputs": r["inputs"], "dynamics_outputs": r["outputs"], "dynamics_initial": r["initial"]}


CFG = TrainConfig(nodes=(3, 2), epochs=2, batch_size=16, lr=0.02, progress=False)


@pytest.mark.parametrize("source", ["network", "uniform"])
def test_refine_collects_only_inside_the_rigs_limits_and_accounts_instrument_time(client, source):
    twin = _twin()
    task = _task()
    net, _ = train_network([twin, twin], task, CFG, seed=0)
    base = _base(client)
    client.instrument_s, client.lo, client.hi = 0.0, np.inf, -np.inf
    opts = RefineOptions(rounds=2, sequences=8, source=source, twin_epochs=1, twin_iters=2, twin_batch=16,
                         retrain_epochs=1, max_batch=10)
    out, info = refine(net, [client, client], task, CFG, [base, base], opts, seed=0)
    assert 0.0 <= client.lo and client.hi <= 1.0          # the twin's range reaches -0.5..1.5
    inst = info["instrument_s"]
    assert inst["total"] == pytest.approx(inst["collect"] + inst["transfer"])
    assert inst["total"] == pytest.approx(client.instrument_s) and inst["total"] > 0
    assert sum(r["instrument_s"]["collect"] + r["instrument_s"]["transfer"] for r in info["rounds"]) == \
        pytest.approx(inst["total"])
    # one twin serves both layers: it is refined once, on both layers' data (8 samples x (3 + 2) nodes)
    assert len(info["twins"]) == 1 and info["rounds"][-1]["sequences"] == [2 * 8 * 5]
    assert out.twins[0] is out.twins[1] and out.twins[0] is not twin


def test_network_and_uniform_collection_spend_the_same_instrument_time(client):
    twin = _twin(0.0, 1.0)
    task = _task()
    net, _ = train_network([twin, twin], task, CFG, seed=0)
    spent = {}
    for source in ("network", "uniform"):
        client.instrument_s = 0.0
        refine(net, [client, client], task, CFG, [_base(client)] * 2,
               RefineOptions(rounds=1, sequences=8, source=source, twin_epochs=1, twin_iters=1, retrain_epochs=1),
               seed=0)
        spent[source] = client.instrument_s
    assert spent["network"] == pytest.approx(spent["uniform"])
    rec = collect_uniform(net, [client, client], 4, 5, seed=0)
    assert [r["inputs"].shape for r in rec] == [(12, 5, 1), (8, 5, 1)]


@pytest.mark.e2e
def test_finetune_twin_fits_the_new_data_and_keeps_the_original(client):
    twin = _twin(0.0, 1.0)
    u = np.full((40, 8, 1), 0.9)                           # held at the top of the range
    r = drive_clipped(client, u, seed=3)
    new, hist = finetune_twin(twin, [(r["inputs"], r["outputs"], r["initial"])], epochs=6, iters=10, batch=32,
                              lr=1e-2, seed=0)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    before = twin.simulate(torch.as_tensor(u[:4], dtype=torch.float32), torch.as_tensor(r["initial"][:4],
                                                                                         dtype=torch.float32))
    twin2 = _twin(0.0, 1.0)
    torch.testing.assert_close(before, twin2.simulate(torch.as_tensor(u[:4], dtype=torch.float32),
                                                      torch.as_tensor(r["initial"][:4], dtype=torch.float32)))


def test_refine_options_refuse_bad_values():
    with pytest.raises(ConfigError, match="source"):
        RefineOptions(source="test")
    with pytest.raises(ConfigError, match="unknown refine key"):
        RefineOptions.from_dict({"round": 2})


def test_instrument_points_add_up_the_stages_of_each_variant():
    from nado.pipeline.report import instrument_points
    nets = {
        "sde": {"transfer": {"accuracy": 0.8}, "instrument_s": 50.0},
        "cascade": {"transfer": {"mse": 2.0, "mse_by_horizon": {"5": 3.0}}, "instrument_s": 50.0,
                    "history": {"instrument_s": 7.0}},
        "pat_finetune": {"transfer": {"accuracy": 0.85}, "instrument_by_stage": {"collect": 100.0, "pat": 30.0,
                                                                               "transfer": 50.0},
                         "instrument_total_s": 180.0},
        "refine": {"transfer": {"accuracy": 0.83}, "instrument_by_stage": {"collect": 100.0, "refine": 20.0,
                                                                         "transfer": 100.0},
                   "instrument_total_s": 220.0,
                   "rounds": [{"transfer": {"accuracy": 0.82}, "instrument_s": {"collect": 10.0, "transfer": 50.0}},
                              {"transfer": {"accuracy": 0.83}, "instrument_s": {"collect": 10.0, "transfer": 50.0}}]},
        "leaky": {"transfer": None},
    }
    pts = instrument_points(nets, collect_s=100.0)
    assert pts["sde"] == [(150.0, 0.8)]
    assert pts["cascade"] == [(157.0, 3.0)]
    assert pts["pat_finetune"] == [(180.0, 0.85)]
    assert pts["refine"] == [(160.0, 0.82), (220.0, 0.83)]       # the last round ends at the total
    assert pts["refine"][-1][0] == nets["refine"]["instrument_total_s"]
    assert "leaky" not in pts
