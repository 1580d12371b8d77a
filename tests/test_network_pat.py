"""Physics-aware training over the bus (nado.network.pat) on LeakyRig and its exact toy twin."""
import uuid

import numpy as np
import pytest
import torch

from bridge.backends.testrigs import LeakyRig
from nado.errors import ConfigError
from nado.network import Network, TrainConfig, train_network
from nado.network.pat import PatOptions, RigLoopNetwork, pat_diagnostics, pat_train
from nado.network.toytwin import ToyTwin
from nado.network.transfer import transfer


def _rig(**kw):
    """One-channel LeakyRig; noise off unless given (then it is exactly the toy twin below)."""
    base = dict(n_in=1, n_out=1, lo=0.0, hi=1.0, leak=(0.5, 0.5), gain=12.0, seed=0, noise=0.0,
                readout_noise=0.0, reset_noise=0.0)
    return LeakyRig("leaky", **{**base, **kw})


def _exact_twin(**kw):
    """LeakyRig's one-channel map as a deterministic ToyTwin (centre 0, gain G * w, start at 0)."""
    rig = _rig()
    base = dict(kind="ode", centre=0.0, gain=float(rig.gain * rig.w[0, 0]), rate=0.5, noise_std=0.0,
                init_std=0.0, obs_mean=0.4, obs_std=0.3)
    return ToyTwin(**{**base, **kw})


class Counting:
    """A client proxy that sums the instrument time of every drive it forwards."""

    def __init__(self, client):
        self.client, self.instrument_s, self.drives = client, 0.0, 0

    def describe(self):
        return self.client.describe()

    def drive(self, inputs, **kw):
        r = self.client.drive(inputs, **kw)
        self.instrument_s += float(r.instrument_s)
        self.drives += 1
        return r


@pytest.fixture
def serve():
    """``serve(rig) -> client`` of that rig behind an in-process RigServer."""
    from bridge import RigClient, RigServer
    stack = []

    def make(rig):
        endpoint = f"inproc://pat-test-{uuid.uuid4().hex[:8]}"
        server = RigServer({"leaky": rig}, endpoint)
        server.start()
        client = RigClient(endpoint, "leaky", timeout_s=20.0)
        stack.append((server, client))
        return client

    yield make
    for server, client in stack:
        client.close()
        server.close()


def _blob_task(n_train=120, n_test=60, T=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, 5))
    y = rng.integers(0, 3, n_train + n_test)
    x = (centres[y][:, None, :] + 0.5 * rng.normal(0, 1, (len(y), T, 5))).astype(np.float32)
    return dict(kind="classification", x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                y_test=y[n_train:], n_classes=3)


CFG = TrainConfig(nodes=(4, 3), epochs=3, batch_size=32, lr=0.02, progress=False)


def test_pat_on_an_exact_twin_reproduces_twin_only_training(serve):
    client = serve(_rig())
    twin = _exact_twin()
    task = _blob_task()
    ref, ref_hist = train_network([twin, twin], task, CFG, seed=3)
    net, info = pat_train(None, [twin, twin], [client, client], task, CFG, PatOptions(epochs=3), seed=3)
    for a, b in zip(ref.parameters(), net.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=2e-4)   # float64 rig vs float32 twin
    np.testing.assert_allclose(info["history"]["val"], ref_hist["val"], atol=1e-9)
    assert info["history"]["best_epoch"] == ref_hist["best_epoch"]


def test_pat_through_a_rig_pool_equals_pat_through_one_rig(serve):
    """Two copies of one noisy rig behind a RigPool: PAT (drives split over the members, fixed
    seeded chunks) gives the weights and history of PAT on the reference drive of one member,
    and books the instrument time both members spent."""
    from bridge import RigClient, RigServer
    from bridge.pool import RigPool, reference_drive
    noisy = dict(noise=0.05, readout_noise=0.02, reset_noise=0.05)
    servers = []
    for i in range(2):
        ep = f"inproc://pat-pool-{uuid.uuid4().hex[:8]}"
        server = RigServer({"leaky": _rig(**noisy)}, ep)
        server.start()
        servers.append((server, ep))
    pool = RigPool([(ep, "leaky") for _, ep in servers], timeout_s=20, chunk=16)
    one = RigClient(servers[0][1], "leaky", timeout_s=20.0)

    class Reference:
        """One member driven chunk by chunk with the pool's seeds (the pooled contract)."""
        def describe(self):
            return one.describe()

        def drive(self, inputs, *, reset=True, seed=None):
            return reference_drive(one, inputs, seed=seed, chunk=16)

    try:
        twin = _exact_twin()
        task = _blob_task(n_train=80, n_test=20)
        opts = PatOptions(epochs=2)
        pooled = Counting(pool)
        net_p, info_p = pat_train(None, [twin, twin], [pooled, pooled], task, CFG, opts, seed=4)
        net_r, info_r = pat_train(None, [twin, twin], [Reference()] * 2, task, CFG, opts, seed=4)
        for a, b in zip(net_p.parameters(), net_r.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        np.testing.assert_allclose(info_p["history"]["val"], info_r["history"]["val"], atol=1e-9)
        assert info_p["instrument_s"]["total"] == pytest.approx(pooled.instrument_s)
        assert info_p["instrument_s"]["total"] == pytest.approx(info_r["instrument_s"]["total"])
    finally:
        one.close()
        pool.close()
        for server, _ in servers:
            server.close()


def _grads(net, x, y, **kw):
    net.zero_grad(set_to_none=True)
    out = net(x, **kw).outputs
    torch.nn.functional.cross_entropy(out[:, -1], y).backward()
    return [p.grad.clone() for p in net.parameters()]


def test_pat_gradient_equals_the_twins_when_rig_and_twin_agree(serve):
    client = serve(_rig())
    twin = _exact_twin()
    task = _blob_task()
    net = Network([twin, twin], (4, 3), 5, 3, seed=1)
    loop = RigLoopNetwork([twin, twin], [client, client], (4, 3), 5, 3, seed=1)
    loop.load_state_dict(net.state_dict())
    x, y = torch.as_tensor(task["x_train"][:32]), torch.as_tensor(task["y_train"][:32])
    for g_twin, g_pat in zip(_grads(net, x, y, noise=False), _grads(loop, x, y)):
        assert float(g_twin.abs().max()) > 0
        torch.testing.assert_close(g_pat, g_twin, rtol=1e-4, atol=1e-6)
    d = pat_diagnostics(net, [twin, twin], [client, client], task, CFG, batch=32)
    assert d["cos_pat_twin"] == pytest.approx(1.0, abs=1e-5)
    assert d["cos_pat_pat"] == pytest.approx(1.0, abs=1e-6)
    assert max(d["forward_nrmse"]) < 1e-5 and max(d["rig_repeat_nrmse"]) < 1e-9
    assert d["rig_slope"]["pat"] == pytest.approx(1.0, rel=0.05)     # the rig's slope is the gradient's


def test_rig_slope_tells_a_right_gradient_from_a_wrong_one(serve):
    """On a noisy rig, the measured loss falls along the gradient of the exact twin and not along
    a random direction; a twin with the wrong sign of gain gives a gradient that climbs."""
    client = serve(_rig(noise=0.05, readout_noise=0.02, reset_noise=0.05))
    task = _blob_task()
    exact = _exact_twin()
    net, _ = train_network([exact, exact], task, TrainConfig(nodes=(4, 3), epochs=1, batch_size=32, lr=0.02,
                                                             progress=False), seed=2)
    good = pat_diagnostics(net, [exact, exact], [client, client], task, CFG, batch=64, seed=0)["rig_slope"]
    flipped = _exact_twin(gain=-exact.config.gain)
    bad = pat_diagnostics(net, [flipped, flipped], [client, client], task, CFG, batch=64, seed=0)["rig_slope"]
    assert good["pat"] > 0.5 and good["twin"] > 0.5
    assert abs(good["random"]) < 0.5 * good["pat"]
    assert bad["pat"] < good["pat"] - 0.3


def test_pat_forward_value_is_the_measurement_whatever_the_twin(serve):
    """A wrong twin changes PAT's gradient, never its forward values: those are the rig's."""
    client = serve(_rig(noise=0.05, readout_noise=0.02, reset_noise=0.05))
    task = _blob_task()
    x = torch.as_tensor(task["x_train"][:16])
    outs = []
    for twin in (_exact_twin(), _exact_twin(gain=1.0, rate=0.2)):
        loop = RigLoopNetwork([twin, twin], [client, client], (4, 3), 5, 3, seed=5)
        outs.append(loop(x).outputs.detach())           # with gradients: rig value + twin straight-through
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)
    with torch.no_grad():
        loop = RigLoopNetwork([_exact_twin()] * 2, [client, client], (4, 3), 5, 3, seed=5)
        torch.testing.assert_close(loop(x).outputs, outs[0], rtol=0, atol=1e-6)


@pytest.mark.e2e
def test_pat_finetune_accounts_instrument_time_and_never_ends_worse_on_validation(serve):
    client = Counting(serve(_rig(noise=0.05, readout_noise=0.02, reset_noise=0.05)))
    twin = _exact_twin(gain=0.6 * _exact_twin().config.gain)        # a mismatched twin
    task = _blob_task()
    net, _ = train_network([twin, twin], task, CFG, seed=0)
    out, info = pat_train(net, [twin, twin], [client, client], task, CFG, PatOptions(epochs=2, max_batch=50),
                          seed=0)
    inst = info["instrument_s"]
    assert inst["total"] == pytest.approx(inst["train"] + inst["validate"])
    assert inst["total"] == pytest.approx(client.instrument_s) and client.instrument_s > 0
    assert info["drives"]["train"] + info["drives"]["validate"] == client.drives
    best = max(info["history"]["val"])
    start = info["start_val"]["accuracy"]
    if info["kept_start"]:
        assert start > best
        for a, b in zip(net.parameters(), out.parameters()):
            torch.testing.assert_close(a, b)
    else:
        assert best >= start
    res = transfer(out, [client, client], task["x_test"], seed=1)     # a plain network again
    assert res.outputs.shape == (60, 4, 3)


def test_pat_options_refuse_bad_values():
    with pytest.raises(ConfigError, match="backward"):
        PatOptions(backward="rig")
    with pytest.raises(ConfigError, match="unknown pat key"):
        PatOptions.from_dict({"epoch": 3})


def test_pat_finetune_on_a_regression_task_with_truncated_bptt(serve):
    """Segments of burn_in + K steps, gradients through the window only; the readout bias stays."""
    client = Counting(serve(_rig(noise=0.02, readout_noise=0.01, reset_noise=0.02)))
    twin = _exact_twin()
    T = 40
    t = np.arange(T + 10)
    s = 0.5 + 0.4 * np.sin(0.35 * t)
    x = np.repeat(s[None, :T, None], 4, 0).astype(np.float32)
    y = np.repeat(np.stack([s[1:T + 1], s[3:T + 3]], -1)[None], 4, 0).astype(np.float32)
    task = dict(kind="regression", x_train=x, y_train=y, x_test=x[:1], y_test=y[:1], horizons=(1, 3), washout=5)
    cfg = TrainConfig(nodes=(4,), epochs=2, batch_size=8, lr=0.02, tbptt=10, burn_in=5, segments_per_epoch=16,
                      washout=5, val_fraction=0.25, progress=False)
    net, _ = train_network([twin], task, cfg, seed=0)
    with torch.no_grad():
        net.biases[-1].add_(0.123)                      # a bias the target mean would overwrite
    out, info = pat_train(net, [twin], [client], task, cfg, PatOptions(epochs=1, keep_start=False, lr=1e-9),
                          seed=0)
    torch.testing.assert_close(out.biases[-1], net.biases[-1], atol=1e-6, rtol=0)
    assert info["drives"]["train"] == 2 and info["instrument_s"]["total"] == pytest.approx(client.instrument_s)


def test_the_report_lists_each_pat_diagnosis_once():
    """Regression runs keep every depth in ``by_depth`` and the deepest again in ``networks``:
    the report's diagnostics table has one row per trained network, labelled by its depth."""
    from nado.pipeline.report import _pat_diagnostics
    dg = {"cos_pat_twin": 0.5, "cos_pat_pat": 0.25, "cos_twin_twin": 0.75, "forward_nrmse": [0.1, 0.2],
          "rig_slope": {"pat": 0.9, "twin": 0.4, "random": 0.01},
          "rig_repeat_nrmse": [0.3, 0.4]}
    deep = {"pat_finetune": {"diagnostics": dg}}
    reg = {"conditions": {"mg": {"networks": deep, "by_depth": {"L2": {"pat_finetune": {"diagnostics": dg}},
                                                                "L3": deep}}}}
    rows = [r for r in _pat_diagnostics(reg) if r.startswith("| mg |")]
    assert [r.split("|")[2].strip() for r in rows] == ["pat_finetune.L2", "pat_finetune.L3"]
    assert rows[0].rstrip(" |").endswith("0.9 / 0.4 / 0.01")
    cls = {"conditions": {"vis25": {"networks": deep}}}
    assert [r.split("|")[2].strip() for r in _pat_diagnostics(cls) if r.startswith("| vis25 |")] == ["pat_finetune"]
