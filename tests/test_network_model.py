"""Networks of twins: h, pi, gradients, truncated BPTT, training beats chance."""
import numpy as np
import pytest
import torch

from nado.errors import ConfigError
from nado.network import Network, PiSpec, TrainConfig, evaluate, train_network, train_software
from nado.network.data import as_task_data
from nado.network.toytwin import ToyTwin


def _digits_task(n_train=400, n_test=200, T=3, seed=0):
    from sklearn.datasets import load_digits
    d = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(d.data))[:n_train + n_test]
    X, y = d.data[idx] / 16.0, d.target[idx]
    masks = np.stack([rng.permutation(64) % T == t for t in range(T)])
    seq = np.stack([X * m for m in masks], 1).astype(np.float32)
    return dict(kind="classification", x_train=seq[:n_train], y_train=y[:n_train],
                x_test=seq[n_train:], y_test=y[n_train:], n_classes=10)


def test_h_maps_into_active_range():
    tw = ToyTwin(input_lo=10.0, input_hi=80.0)
    net = Network([tw], [5], 3, 2, seed=0)
    z = torch.randn(4, 6, 3) * 1e3                       # huge pre-activations
    s = net.layer_inputs(0, z)
    assert s.shape == (4, 6, 5, 1)
    s = s.detach()
    assert float(s.min()) >= 10.0 and float(s.max()) <= 80.0
    mid = net.maps[0].h(torch.zeros(1))
    assert float(mid) == pytest.approx(45.0)


def test_pi_delays_channels_and_projection():
    tw = ToyTwin(n_obs=3, obs_mean=1.0, obs_std=2.0)
    net = Network([tw], [2], 1, 1, pi=PiSpec(delays=(0, 2), channels=(0, 2)))
    assert net.maps[0].features == 4
    obs = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    init = torch.full((2, 3), 5.0)
    z = net.maps[0].pi(obs, init)
    assert z.shape == (2, 4, 4)
    torch.testing.assert_close(z[:, :, 0], (obs[:, :, 0] - 1) / 2)
    torch.testing.assert_close(z[:, 0, 2], torch.full((2,), 2.0))            # delay 2 at t=0 -> initial
    torch.testing.assert_close(z[:, 3, 2], (obs[:, 1, 0] - 1) / 2)
    proj = Network([tw], [2], 1, 1, pi=PiSpec(project=2)).maps[0]
    assert proj.features == 2
    with pytest.raises(ConfigError, match="channels"):
        Network([tw], [2], 1, 1, pi=PiSpec(channels=(5,)))


def test_gradients_reach_only_the_weights():
    tw = ToyTwin()
    net = Network([tw, tw], [4, 3], 2, 2, seed=1)
    out = net(torch.rand(5, 6, 2), generator=torch.Generator().manual_seed(0))
    assert out.outputs.shape == (5, 6, 2)
    assert [a.shape[-1] for a in out.activities] == [4, 3]
    out.outputs.square().sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.parameters())
    assert all(not p.requires_grad and p.grad is None for p in tw.parameters())
    assert not any(n.startswith("twins") for n, _ in net.named_parameters())


def test_readout_from_all_layers(tmp_path):
    """``readout_from="all"``: the readout sees every hidden layer side by side; it survives a
    checkpoint; anything else is named."""
    from nado.network.checkpoint import load_network, save_network
    tw = ToyTwin()
    net = Network([tw, tw], [4, 3], 2, 5, readout_from="all", seed=1)
    assert tuple(net.weights[-1].shape) == (5, 7)
    x = torch.rand(6, 4, 2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    out = net(x, generator=g())
    torch.testing.assert_close(out.outputs, torch.cat(out.activities, -1) @ net.weights[-1].T + net.biases[-1])
    save_network(net, tmp_path / "n.pt")
    back, _ = load_network(tmp_path / "n.pt", twins=[tw, tw])
    assert back.readout_from == "all"
    torch.testing.assert_close(back(x, generator=g()).outputs, out.outputs)
    with pytest.raises(ConfigError, match="readout_from"):
        Network([tw], [2], 1, 1, readout_from="first")
    with pytest.raises(ConfigError, match="readout_from"):
        TrainConfig(readout_from="middle")


def test_an_interrupted_fit_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """``TrainConfig.checkpoint``: a fit killed after its second epoch and started again with the
    same file ends with exactly the weights and history of a fit that was never interrupted."""
    import nado.network.train as train_mod
    from dataclasses import replace
    task = _digits_task(n_train=200, n_test=50)
    cfg = TrainConfig(nodes=(6,), epochs=4, batch_size=32, lr=0.02, progress=False, augment="none")
    twin = ToyTwin()
    straight, h_straight = train_network([twin], task, cfg, seed=3)

    real_save, saved = train_mod.save_torch_atomic, []

    def save_then_die(path, obj):
        real_save(path, obj)
        saved.append(obj["epoch"])
        if obj["epoch"] == 1:
            raise KeyboardInterrupt("killed after epoch 1")

    ck = replace(cfg, checkpoint=str(tmp_path / "fit.pt"))
    monkeypatch.setattr(train_mod, "save_torch_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_network([twin], task, ck, seed=3)
    monkeypatch.setattr(train_mod, "save_torch_atomic", real_save)
    resumed, h_resumed = train_network([twin], task, ck, seed=3)
    assert saved == [0, 1] and h_resumed["resumed_at"] == [2]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert h_resumed["loss"] == h_straight["loss"] and h_resumed["val"] == h_straight["val"]
    # a fit that stopped early and is started again from its file trains no further epoch
    early = replace(cfg, epochs=30, patience=1, lr=0.2, checkpoint=str(tmp_path / "early.pt"))
    _, h_early = train_network([twin], task, early, seed=3)
    _, h_again = train_network([twin], task, early, seed=3)
    assert len(h_early["epoch"]) < 30 and h_again["epoch"] == h_early["epoch"], (h_early["epoch"], h_again["epoch"])


def test_noise_switch_and_seeds():
    tw = ToyTwin(noise_std=0.2)
    net = Network([tw], [4], 1, 1, seed=0)
    x = torch.rand(3, 5, 1)
    a = net(x, generator=torch.Generator().manual_seed(3)).outputs
    b = net(x, generator=torch.Generator().manual_seed(3)).outputs
    c = net(x, generator=torch.Generator().manual_seed(4)).outputs
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    x0 = [torch.zeros(12, 1)]
    d1 = net(x, noise=False, x0=x0, generator=torch.Generator().manual_seed(1)).outputs
    d2 = net(x, noise=False, x0=x0, generator=torch.Generator().manual_seed(2)).outputs
    torch.testing.assert_close(d1, d2)


def test_truncated_bptt_runs_burn_in_and_window_as_one_sequence(monkeypatch):
    """The trainer simulates burn-in + window from the reset (the state the rig reaches, not a
    restart from the last observable) and back-propagates into the weights through the window only."""
    tw = ToyTwin(noise_std=0.01)
    T = 40
    t = np.arange(T + 3)
    x = np.sin(0.3 * t)[None, :T, None].astype(np.float32)
    y = np.sin(0.3 * (t[3:] ))[None, :, None].astype(np.float32)
    task = dict(kind="regression", x_train=x, y_train=y, x_test=x, y_test=y)
    seen = []
    orig = Network.forward

    def spy(self, xb, **kw):
        out = orig(self, xb, **kw)
        seen.append((xb.shape[1], kw.get("grad_from", 0), torch.is_grad_enabled(), out.outputs.requires_grad))
        return out

    monkeypatch.setattr(Network, "forward", spy)
    cfg = TrainConfig(nodes=(4,), epochs=1, tbptt=5, burn_in=7, segments_per_epoch=8, batch_size=4,
                      progress=False, val_fraction=0.0)
    train_network([tw], task, cfg, seed=0)
    train_calls = [s for s in seen if s[2]]
    assert len(train_calls) == 2 and all(s[:2] == (12, 7) and s[3] for s in train_calls)
    with pytest.raises(ConfigError, match="exceed"):
        train_network([tw], task, TrainConfig(nodes=(4,), epochs=1, tbptt=30, burn_in=20, progress=False), seed=0)


def test_grad_from_detaches_early_inputs_but_keeps_the_state():
    tw = ToyTwin(kind="ode")
    net = Network([tw, tw], [3, 3], 2, 2, seed=1)
    x = torch.randn(4, 12, 2)
    x0 = [tw.sample_initial(12, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    full = net(x, x0=x0).outputs
    cut = net(x, x0=x0, grad_from=8).outputs
    torch.testing.assert_close(cut, full)                    # same trajectory, state continues
    cut[:, :8].sum().backward()                              # loss before grad_from: no hidden grads
    assert all(float(w.grad.abs().max()) == 0.0 for w in net.weights[:2])
    net.zero_grad()
    net(x, x0=x0, grad_from=8).outputs[:, 8:].sum().backward()
    assert float(net.weights[0].grad.abs().max()) > 0


@pytest.mark.e2e
def test_training_beats_chance_and_history():
    task = _digits_task()
    cfg = TrainConfig(nodes=(24,), epochs=6, batch_size=32, lr=2e-2, progress=False, patience=4)
    net, hist = train_network([ToyTwin(noise_std=0.05)], task, cfg, seed=0)
    acc = evaluate(net, as_task_data(task), cfg)["accuracy"]
    assert acc > 0.5, acc                               # chance is 0.1
    assert len(hist["loss"]) == len(hist["val"]) >= 1 and hist["val_metric"] == "accuracy"
    assert hist["loss"][-1] < hist["loss"][0]


@pytest.mark.e2e
def test_software_references_train():
    task = _digits_task(n_train=300, n_test=150)
    cfg = TrainConfig(nodes=(16,), epochs=5, batch_size=32, lr=2e-2, progress=False)
    accs = {}
    for kind in ("static", "leaky"):
        net, _ = train_software(task, cfg, kind=kind, seed=0)
        accs[kind] = evaluate(net, as_task_data(task), cfg)["accuracy"]
    assert accs["leaky"] > 0.5 and accs["static"] > 0.2, accs


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"nodez": [3]})
    with pytest.raises(ConfigError, match="loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ConfigError, match="one twin per hidden layer"):
        Network([ToyTwin()], [3, 3], 2, 2)


def test_window_loss_with_truncated_bptt_learns():
    """EMG-like: cross-entropy over steps 6..9 only, truncated BPTT (K=4, burn-in 2)."""
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (3, 4))
    y = rng.integers(0, 3, 300)
    x = (0.3 * rng.normal(0, 1, (300, 12, 4))).astype(np.float32)
    x[:, 5:10] += centres[y][:, None, :]                 # class evidence only inside the window
    task = dict(kind="classification", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:],
                n_classes=3)
    cfg = TrainConfig(nodes=(8,), epochs=8, batch_size=32, lr=5e-2, loss="ce_window", window=(6, 10),
                      tbptt=4, burn_in=2, segments_per_epoch=128, progress=False)
    net, hist = train_network([ToyTwin(noise_std=0.02)], task, cfg, seed=0)
    assert evaluate(net, as_task_data(task), cfg)["accuracy"] > 0.7


def test_bfloat16_training_reaches_the_float32_accuracy():
    """train.precision = "bfloat16" (the frozen twins' matmuls in bf16, all else float32) trains
    a network of NRA-shaped SDE twins to the accuracy of float32 training: same seed, same data,
    test accuracy within 5 points (the two runs' noise draws are identical; what differs is
    rounding, which changes the path of training a little). A bad precision is named."""
    from nado.twin import Twin, TwinConfig

    torch.manual_seed(0)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=5, n_aux=10, input_lo=(0.0,),
                           input_hi=(80.0,)))
    with torch.no_grad():                 # a drift that responds to its input (3 steps: stable)
        for layer in twin.f:
            layer.weight.normal_(0, 0.3)
    task = _digits_task()
    acc = {}
    for precision in ("float32", "bfloat16"):
        cfg = TrainConfig(nodes=(24,), epochs=6, batch_size=32, lr=2e-2, progress=False,
                          precision=precision)
        net, _ = train_network([twin], task, cfg, seed=0)
        acc[precision] = evaluate(net, as_task_data(task), cfg)["accuracy"]
    assert acc["float32"] > 0.5, acc                        # chance is 0.1
    assert abs(acc["bfloat16"] - acc["float32"]) <= 0.05, acc
    with pytest.raises(ConfigError, match="train.precision.*'half'"):
        TrainConfig(precision="half")


def test_auto_precision_takes_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    """train.precision = "auto" resolves from the CPU's flags: bfloat16 where they name native
    bf16 instructions (avx512_bf16, amx_bf16; aarch64 bf16), float32 elsewhere, where emulated
    bf16 is slower. Without them, "auto" training is float32 training exactly (same weights); the
    history records the precision used."""
    from nado.twin import Twin, TwinConfig
    from nado.twin import precision as prec

    assert prec.resolve_precision("bfloat16") == "bfloat16"       # explicit names are kept
    torch.manual_seed(0)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=2, n_aux=2, input_lo=(0.0,),
                           input_hi=(80.0,)))
    task = _digits_task()
    runs = {}
    for flags, precision in [(set(), "float32"), ({"fpu", "avx512f"}, "auto"),
                             ({"avx512f", "avx512_bf16"}, "auto")]:
        monkeypatch.setattr(prec, "_cpu_flags", lambda flags=flags: flags)
        cfg = TrainConfig(nodes=(8,), epochs=1, batch_size=64, lr=2e-2, progress=False,
                          precision=precision)
        net, hist = train_network([twin], task, cfg, seed=0)
        runs[(precision, frozenset(flags))] = (hist["precision"], torch.cat(
            [p.detach().flatten() for p in net.parameters() if p.requires_grad]))
    (p32, w32), (pno, wno), (pbf, wbf) = runs.values()
    assert (p32, pno, pbf) == ("float32", "float32", "bfloat16")
    assert torch.equal(w32, wno)
    assert not torch.equal(w32, wbf)          # bf16 rounding moved the path of training


def test_plateau_factor_cuts_the_rate_once_the_loss_stalls_and_keeps_the_cut(tmp_path, monkeypatch):
    """``train.plateau_factor``: a fit whose loss keeps falling is untouched (the same weights as
    without it); an epoch whose mean loss is not below the lowest so far multiplies the learning
    rate by the factor, the cosine schedule carries the cut on, and a fit resumed from its
    checkpoint after the cut continues with exactly the same rates and weights."""
    import math
    from dataclasses import replace

    import nado.network.train as train_mod
    task = _digits_task(n_train=200, n_test=50)
    cfg = TrainConfig(nodes=(6,), epochs=5, batch_size=32, lr=0.02, progress=False, augment="none")
    plain, h_plain = train_network([ToyTwin()], task, cfg, seed=3)
    kept, h_kept = train_network([ToyTwin()], task, replace(cfg, plateau_factor=0.5), seed=3)
    assert h_kept["plateaus"] == [] and h_kept["loss"] == h_plain["loss"]
    for a, b in zip(plain.state_dict().values(), kept.state_dict().values()):
        assert torch.equal(a, b)

    # stall epoch 1 only: its loss gets a constant (no gradient) that lifts it above epoch 0's
    real_loss, real_eval, epoch = train_mod.task_loss, train_mod.evaluate, [0]
    monkeypatch.setattr(train_mod, "task_loss", lambda *a: real_loss(*a) + (10.0 if epoch[0] == 1 else 0.0))

    def count_epochs(*a, **k):
        epoch[0] += 1
        return real_eval(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate", count_epochs)
    cut = replace(cfg, plateau_factor=0.5, checkpoint=str(tmp_path / "cut.pt"))
    _, h_cut = train_network([ToyTwin()], task, cut, seed=3)
    cosine = [0.02 * (1 + math.cos(math.pi * (e + 1) / 5)) / 2 for e in range(5)]
    assert h_cut["plateaus"] == [1]
    assert h_cut["lr"] == pytest.approx([cosine[0]] + [c * 0.5 for c in cosine[1:4]] + [h_cut["lr"][4]], rel=1e-9)
    assert h_cut["lr"][4] == pytest.approx(0.0, abs=1e-12)     # cosine's end: zero either way

    # the same fit killed after epoch 2 and resumed from its file
    real_save = train_mod.save_torch_atomic

    def save_then_die(path, obj):
        real_save(path, obj)
        if obj["epoch"] == 2:
            raise KeyboardInterrupt("killed after epoch 2")

    epoch[0] = 0
    again = replace(cut, checkpoint=str(tmp_path / "again.pt"))
    monkeypatch.setattr(train_mod, "save_torch_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_network([ToyTwin()], task, again, seed=3)
    monkeypatch.setattr(train_mod, "save_torch_atomic", real_save)
    resumed, h_resumed = train_network([ToyTwin()], task, again, seed=3)
    assert h_resumed["plateaus"] == [1] and h_resumed["lr"] == h_cut["lr"] and h_resumed["loss"] == h_cut["loss"]
    with pytest.raises(ConfigError, match="plateau_factor"):
        TrainConfig(plateau_factor=1.5)
