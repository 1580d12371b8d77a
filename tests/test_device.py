"""One device setting (nado.device): the resolver, ``[run] device`` / ``--device``, fits and
training with an explicit CPU device, checkpoints loaded with ``map_location``, and (only where
CUDA exists) CPU vs GPU results on the same seed."""
import json

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from nado.cli import main
from nado.device import check_device_spec, resolve_device, to_device
from nado.errors import ConfigError

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs a CUDA device (torch.cuda.is_available() is False here); "
                                 "scripts/gpu-check.sh runs these checks on a GPU machine")


# ---------------------------------------------------------------- the resolver
def test_auto_picks_cuda_only_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_devices(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" cpu ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"2 CUDA device\(s\)"):
        resolve_device("cuda:2")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="CUDA is not available") as err:
            resolve_device(spec, "run.device")
        assert "run.device" in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "CPU0", "", 3, None])
def test_bad_strings_name_the_setting(spec):
    with pytest.raises(ConfigError, match="--device.*not a device"):
        check_device_spec(spec, "--device")


def test_to_device_keeps_cpu_data_without_copy():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = to_device(a, torch.device("cpu"))
    assert t.dtype == torch.float32 and t.data_ptr() == a.__array_interface__["data"][0]
    assert to_device(a, torch.device("cpu"), torch.long).dtype == torch.long


# ---------------------------------------------------------------- the scenario and the runner
def _scenario(tmp_path, device):
    from nado.pipeline.scenario import load_scenario
    f = tmp_path / "s.toml"
    f.write_text(f'[run]\ndevice = "{device}"\n[rigs]\nnra = "nra"\n[task]\nkind = "digits"\n'
                 '[network]\nlayers = ["nra"]\nnodes = [4]\n')
    return load_scenario(f)


def test_run_device_in_scenarios(tmp_path, monkeypatch):
    from nado.pipeline.cache import StageCache
    from nado.pipeline.run import Runner, with_device
    assert _scenario(tmp_path, "cpu").run.device == "cpu"
    with pytest.raises(ConfigError, match="run.device"):
        _scenario(tmp_path, "tpu")
    sc = _scenario(tmp_path, "auto")
    assert with_device(sc, "cpu").run.device == "cpu" and with_device(sc, None) is sc
    with pytest.raises(ConfigError, match="--device"):
        with_device(sc, "cuda:one")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cache = StageCache(tmp_path / "cache")
    assert Runner(sc, tmp_path / "out", cache).device == torch.device("cpu")
    with pytest.raises(ConfigError, match="run.device.*CUDA is not available"):
        Runner(with_device(sc, "cuda"), tmp_path / "out", cache)     # before any stage runs


def test_cli_rejects_a_bad_device(capsys):
    assert main(["bench", "--only", "twin", "--device", "gpu"]) == 1
    assert "--device = 'gpu' is not a device" in capsys.readouterr().err


# ---------------------------------------------------------------- explicit CPU everywhere
@pytest.mark.e2e
def test_fits_with_an_explicit_cpu_device_match_the_default():
    from nado.twin import fit_ode, fit_sde
    from nado.twin.synthetic import make_dataset
    data = make_dataset(sequences=60, noise=0.1, repeats=(6, 6), seed=3)
    kw = dict(epochs=2, window=5, batch=32, progress=False)
    a, ha = fit_ode(data, seed=1, device="cpu", **kw)
    b, hb = fit_ode(data, seed=1, device=torch.device("cpu"), **kw)
    assert ha["train_loss"] == hb["train_loss"]
    assert all(p.device.type == "cpu" for p in a.parameters())
    s, hs = fit_sde(data, a, seed=2, warm_iters=3, gan_iters=2, eval_every=2, progress=False,
                    device="cpu")
    assert s.g[0].weight.device.type == "cpu" and np.isfinite(hs["val"][-1]["w1"])


def test_checkpoints_load_with_map_location(tmp_path):
    from nado.twin import Twin, TwinConfig
    from nado.twin.checkpoint import load_twin, save_twin
    torch.manual_seed(0)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=2, n_aux=2, width=8, depth=1,
                           input_lo=(0.0,), input_hi=(80.0,)))
    save_twin(twin, tmp_path / "t.pt")
    s = torch.rand(5, 7, 1) * 80
    want = twin.simulate(s, torch.zeros(5, 1), generator=torch.Generator().manual_seed(4))
    for loc in ("cpu", torch.device("cpu"), "auto"):
        back = load_twin(tmp_path / "t.pt", map_location=loc)
        dev = resolve_device(loc)
        assert back.obs_mean.device.type == dev.type
        got = back.simulate(s, torch.zeros(5, 1), generator=torch.Generator(dev).manual_seed(4))
        if dev.type == "cpu":
            assert torch.equal(got, want)
    with pytest.raises(ConfigError, match="map_location"):
        load_twin(tmp_path / "t.pt", map_location="floppy")


def test_network_checkpoint_loads_with_map_location(tmp_path):
    from nado.network import TrainConfig, train_software
    from nado.network.checkpoint import load_network, save_network
    from nado.network.train import predict
    rng = np.random.default_rng(0)
    x = rng.random((40, 3, 6)).astype(np.float32)
    task = dict(kind="classification", x_train=x, y_train=rng.integers(0, 3, 40), x_test=x[:10],
                y_test=rng.integers(0, 3, 10), n_classes=3)
    cfg = TrainConfig(nodes=(5,), epochs=1, batch_size=16, progress=False)
    net, hist = train_software(task, cfg, kind="leaky", seed=0, device="cpu")
    assert np.isfinite(hist["loss"][0])
    save_network(net, tmp_path / "n.pt")
    back, _ = load_network(tmp_path / "n.pt", map_location=torch.device("cpu"))
    assert np.array_equal(predict(back, x)[0], predict(net, x)[0])


from test_network_cli import STATION  # noqa: E402  (the same leaky station)

SCENARIO = """
[run]
name = "dev"
device = "cpu"
[station]
path = "station.toml"
bind = "inproc"
[rigs]
nra = "nra"
[task]
kind = "digits"
visibility = [25]
n_train = 60
n_test = 20
[network]
layers = ["nra"]
nodes = [4]
[train]
epochs = 1
batch_size = 32
[variants]
list = ["sde", "leaky"]
"""


@pytest.mark.e2e
def test_train_and_transfer_commands_on_an_explicit_cpu(tmp_path):
    from nado.twin import Twin, TwinConfig
    from nado.twin.checkpoint import save_twin
    (tmp_path / "station.toml").write_text(STATION)
    (tmp_path / "scen.toml").write_text(SCENARIO)
    for k in ("ode", "sde"):
        cfg = TwinConfig(kind=k, n_in=1, n_obs=1, n_delay=2, n_aux=2 if k == "sde" else 0,
                         width=8, depth=1, input_lo=(0.0,), input_hi=(80.0,))
        save_twin(Twin(cfg), tmp_path / "twins" / f"nra-{k}.pt")
    common = [str(tmp_path / "scen.toml"), "--twins", str(tmp_path / "twins"),
              "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(["train", *common]) == 0                        # [run] device = "cpu"
    assert main(["transfer", *common, "--device", "cpu"]) == 0  # --device replaces it
    res = json.loads((tmp_path / "out" / "transfer.json").read_text())["vis25"]
    assert 0 <= res["sde"]["transfer"]["accuracy"] <= 1 and res["leaky"]["transfer"] is None


# ---------------------------------------------------------------- CPU vs GPU (CUDA only)
@CUDA
def test_twin_layer_on_cuda_matches_cpu():
    from nado.twin import Twin, TwinConfig
    from nado.twin.integrate import integrate
    torch.manual_seed(0)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=5, n_aux=10,
                           input_lo=(0.0,), input_hi=(80.0,)))
    u = torch.rand(256, 20, 1) * 2 - 1
    y0 = torch.randn(256, 6) * 0.1
    dw = torch.randn(20, 256, 11)
    outs, grads = [], []
    for dev in ("cpu", "cuda"):
        t = twin.to(dev)
        uu = u.to(dev).requires_grad_(True)
        z = integrate(t.packed(True), uu, y0.to(dev), method="euler", dw=dw.to(dev))
        (z ** 2).mean().backward()
        outs.append(z.detach().cpu())
        grads.append(uu.grad.cpu())
    assert torch.allclose(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-3)


@CUDA
def test_network_step_on_cuda_matches_cpu():
    from nado.network import Network
    from nado.twin import Twin, TwinConfig
    torch.manual_seed(0)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=5, n_aux=10,
                           input_lo=(0.0,), input_hi=(80.0,)))
    x = torch.rand(32, 4, 20)
    res = []
    for dev in ("cpu", "cuda"):
        net = Network([twin.to(dev)], [16], 20, 3, seed=0)
        out = net(x.to(dev), noise=False, x0=[torch.zeros(32 * 16, 1, device=dev)]).outputs
        out.sum().backward()
        res.append((out.detach().cpu(), net.weights[0].grad.cpu()))
    assert torch.allclose(res[0][0], res[1][0], atol=1e-4, rtol=1e-4)
    assert torch.allclose(res[0][1], res[1][1], atol=1e-4, rtol=1e-3)


@pytest.mark.e2e
def test_fit_command_with_an_explicit_cpu(tmp_path):
    from nado.data.dataset import save_dataset
    from nado.twin.checkpoint import load_twin
    from nado.twin.synthetic import make_dataset
    save_dataset(make_dataset(sequences=40, noise=0.1, repeats=(6, 6), seed=1), tmp_path / "d.h5")
    small = ["--width", "8", "--depth", "1", "--n-delay", "1", "--no-progress", "--device", "cpu"]
    assert main(["fit", "ode", str(tmp_path / "d.h5"), "--out", str(tmp_path / "o.pt"),
                 "--epochs", "1"] + small) == 0
    assert main(["fit", "sde", str(tmp_path / "d.h5"), "--out", str(tmp_path / "s.pt"), "--ode",
                 str(tmp_path / "o.pt"), "--warm-iters", "2", "--gan-iters", "1"] + small) == 0
    assert load_twin(tmp_path / "s.pt", map_location="cpu").config.kind == "sde"
    assert main(["fit", "ode", str(tmp_path / "d.h5"), "--out", str(tmp_path / "x.pt"),
                 "--device", "cuda:z"]) == 1


@CUDA
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_every_variant_of_the_pipeline_runs_on_cuda(tmp_path):
    """``nado run --device cuda`` end to end with every kind of variant: the twins, the twin
    networks, the software and RC references, physics-aware training (with its diagnostics),
    twin refinement, and (regression) direct vs cascade learning. Their rig-facing code moves
    data between the GPU and the rigs' numpy; this is where a CPU tensor meeting a GPU one, or a
    CPU generator drawing on the GPU, would fail."""
    from test_network_cli import STATION
    from test_variants_agree import REGRESSION, SCENARIO
    (tmp_path / "station.toml").write_text(STATION)
    every = ('list = ["sde", "ode", "rc", "rc1", "mlp", "leaky", "pat", "pat_finetune", "refine", '
             '"refine_uniform"]\n[variants.pat]\nepochs = 1\n[variants.refine]\nrounds = 1\n'
             'sequences = 8\nretrain_epochs = 1')
    body = SCENARIO.replace('list = ["sde", "ode", "rc", "rc1", "mlp", "leaky"]', every)
    for name, text in (("cls", body), ("reg", REGRESSION)):
        scen = tmp_path / f"{name}.toml"
        scen.write_text(text.format(out=tmp_path / name, cache=tmp_path / "cache"))
        assert main(["run", str(scen), "--no-progress", "--device", "cuda"]) == 0, name
    cls = json.loads((tmp_path / "cls" / "agree" / "results.json").read_text())
    assert cls["device"].startswith("cuda")
    assert set(cls["networks"]) == {"sde", "ode", "rc", "rc1", "mlp", "leaky", "pat", "pat_finetune",
                                    "refine", "refine_uniform"}
    for v, r in cls["networks"].items():
        if v not in ("mlp", "leaky"):                       # software references do not transfer
            assert 0 <= r["transfer"]["accuracy"] <= 1, v
    assert len(cls["networks"]["pat_finetune"]["diagnostics"]["forward_nrmse"]) == 2
    reg = json.loads((tmp_path / "reg" / "agree" / "results.json").read_text())
    (cond,) = reg["conditions"].values()
    for depth in ("L2", "L3"):
        for v in ("direct", "cascade"):
            assert np.isfinite(cond["by_depth"][depth][v]["transfer"]["mse"]), (depth, v)


# ---------------------------------------------------------------- the GPU code path, audited on a CPU
# No GPU is needed to check that the hot loops keep to one device. They run on torch's ``meta``
# device (shapes without data; it takes the non-CPU code path: ``_dense`` is ``mm``/``addmm``
# there, as on CUDA) under a dispatch mode that sees every aten op, forward, backward and the
# optimiser. Any op touching a tensor off that device is recorded: a tensor the step creates on
# the host (CUDA would refuse to mix it, or copy it on every step) or a host-device copy. 0-d CPU
# tensors are exempt (every device accepts them as scalars). This is stricter than CUDA, which
# silently copies a CPU index tensor or a CPU scalar list per step. A meta tensor has no data,
# so ``.item()``, ``bool(t)``, ``.tolist()`` or ``nonzero`` raise there: a step that runs on it
# never waits for the device (no host sync per step).
class DeviceAudit(TorchDispatchMode):
    def __init__(self, device: str):
        super().__init__()
        self.device, self.ops, self.off = torch.device(device), 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        ts = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        if any(t.device != self.device and not (t.device.type == "cpu" and t.dim() == 0) for t in ts):
            self.off.append((str(func), sorted({str(t.device) for t in ts})))
        return out


def _nra_like_twin(kind="sde", **kw):
    from nado.twin import Twin, TwinConfig
    torch.manual_seed(0)
    return Twin(TwinConfig(kind=kind, n_in=1, n_obs=1, n_delay=5, n_aux=10 if kind == "sde" else 0,
                           width=16, input_lo=(0.0,), input_hi=(80.0,), **kw))


def test_the_audit_catches_a_host_tensor_in_a_device_step():
    """The audit itself: a step that builds an index on the host is caught, its device twin not."""
    x = torch.zeros(8, 6, device="meta")
    with DeviceAudit("meta") as bad:
        (x[:, torch.arange(3)] * 2).sum()
    with DeviceAudit("meta") as good:
        (x[:, torch.arange(3, device="meta")] * 2).sum()
    assert bad.off and not good.off and good.ops >= 3


@pytest.mark.parametrize("path", ["frozen", "trainable", "general", "substeps", "evaluation"])
def test_twin_integration_keeps_to_the_device(path):
    """Forward and backward of each integration path (the networks' frozen-twin sequence with its
    hand-written backward, the fits' autograd step, the general path, substeps; a frozen twin
    without gradients, forward only) on a device: not one op reads or makes a tensor elsewhere."""
    from nado.twin.integrate import integrate
    twin = _nra_like_twin(substeps=2 if path == "substeps" else 1).to("meta")
    if path in ("frozen", "evaluation"):
        twin.requires_grad_(False)
    u = torch.zeros(64, 12, 1, device="meta", requires_grad=True)
    y0 = torch.zeros(64, 6, device="meta")
    dw = torch.zeros(12 * (2 if path == "substeps" else 1), 64, 11, device="meta")
    if path == "evaluation":
        with DeviceAudit("meta") as audit, torch.no_grad():
            z = integrate(twin.packed(True), u, y0, method="euler", dw=dw)
        assert z.shape == (64, 12, 1) and z.grad_fn is None
        assert audit.ops > 100 and audit.off == [], audit.off[:5]
        return
    with DeviceAudit("meta") as audit:
        z = integrate(twin.packed(True), u, y0, method="euler", dw=dw,
                      fast=path != "general", substeps=2 if path == "substeps" else 1)
        (z ** 2).mean().backward()
    assert u.grad is not None and u.grad.device.type == "meta"
    assert (z.grad_fn.name() == "_SequenceBackward") == (path == "frozen")
    assert audit.ops > 100 and audit.off == [], audit.off[:5]


@pytest.mark.parametrize("model, precision, tbptt", [("sde", "float32", None), ("sde", "bfloat16", None),
                                                    ("sde", "float32", 3), ("ode", "float32", None),
                                                    ("leaky", "float32", None)])
def test_a_training_step_copies_only_its_batch_to_the_device(model, precision, tbptt):
    """:func:`nado.network.train.train_step`, the step ``fit`` repeats (forward through the
    twins with noise, loss, backward, clipping, Adam), twice on a device: per step exactly two
    host-to-device copies (the batch's inputs and labels) and no other op off the device: noise,
    initial states and every intermediate are made on the device."""
    from nado.network.config import TrainConfig
    from nado.network.data import TaskData
    from nado.network.model import Network
    from nado.network.software import SoftwareNetwork
    from nado.network.train import _batches, train_step
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6, 20), dtype=np.float32), rng.integers(0, 3, 40)
    task = TaskData("classification", x, y, x, y, n_classes=3)
    config = TrainConfig(nodes=(8, 8), batch_size=16, clip_norm=1.0, precision=precision,
                         tbptt=tbptt, burn_in=2 if tbptt else 0, segments_per_epoch=32)
    if model == "leaky":
        net = SoftwareNetwork(20, [8, 8], 3, kind="leaky").to("meta")
    else:
        twin = _nra_like_twin(model).to("meta")
        net = Network([twin, twin], [8, 8], 20, 3, seed=0)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    batches = list(_batches(task, config, rng, "ce_last"))[:2]
    for batch in batches:
        with DeviceAudit("meta") as audit:
            loss = train_step(net, opt, batch, config, "ce_last", None, torch.device("meta"), precision)
        assert loss.device.type == "meta" and audit.ops > 50
        # each of the two numpy arrays: wrapped (``from_numpy``: no copy), then copied over
        assert audit.off == [("aten.lift_fresh.default", ["cpu"]),
                             ("aten._to_copy.default", ["cpu", "meta"])] * 2, audit.off[:5]
    assert all(p.grad.device.type == "meta" for p in opt.param_groups[0]["params"])
