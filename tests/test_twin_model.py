"""Twin model, integrator and checkpoints: agreement with torchsde, gradients, errors, seeds."""
import json

import numpy as np
import pytest
import torch

from nado.errors import CheckpointError, ConfigError
from nado.twin import Twin, TwinConfig, load_twin, save_twin
from nado.twin.integrate import integrate
from nado.twin.reference import sdeint_reference


def _random_sde(method="euler", n_delay=5, n_obs=1, seed=0, delays="shift"):
    torch.manual_seed(seed)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=n_obs, n_delay=n_delay, n_aux=10,
                           method=method, delays=delays, input_lo=(0.0,), input_hi=(80.0,),
                           obs_mean=(2.0,) * n_obs, obs_std=(0.5,) * n_obs))
    with torch.no_grad():      # make noise, coupling and drift all matter
        for layer in list(twin.g) + list(twin.f):
            layer.weight.normal_(0, 0.2)
        twin.a_mat.normal_(0, 0.5)
    return twin


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("method,n_delay,delays,tol", [
    ("euler", 5, "shift", 1e-5), ("euler", 5, "learned", 1e-5), ("euler", 0, "shift", 0.0),
    ("heun", 0, "shift", 0.0)])
def test_integrator_matches_torchsde_with_same_increments(method, n_delay, delays, tol, fast):
    twin = _random_sde(method, n_delay, delays=delays)
    u = torch.rand(32, 20, 1) * 2 - 1
    y0 = twin.embed(torch.randn(32, 1))
    dw = twin.sample_noise(32, 20, generator=torch.Generator().manual_seed(1))
    p = twin.packed(True)
    ours = integrate(p, u, y0, method=method, dw=dw, fast=fast)
    ref = sdeint_reference(p, u, y0, method=method, dw=dw)
    assert ours.shape == ref.shape == (32, 20, 1)
    assert ours.std() > 0.3                       # a real, noisy trajectory
    # dt = 1 is dyadic: bit-level without delays on the general path; with delays torchsde
    # computes the shift as y + (y_prev - y), one rounding per step, which 20 nonlinear steps
    # grow to ~1e-6 relative. The packed Euler step (nado.twin._fast) sums in another order
    # (biases through a constant column, shift and A a in one matmul): float32 rounding only,
    # which depends on the CPU's matmul kernels: under 1e-5 relative on an AMD EPYC, 1.35e-5 on
    # an Intel Xeon (AVX512); a wrong step would differ by O(1).
    if fast and method == "euler":
        tol = max(tol, 5e-5)
    assert (ours - ref).abs().max().item() <= tol * ref.abs().max().item()


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("delays,n_delay,n_obs,noise", [
    ("learned", 5, 1, True), ("shift", 5, 1, False), ("learned", 2, 2, True), ("shift", 0, 2, True)])
def test_packed_euler_step_equals_general_step_in_float64(delays, n_delay, n_obs, noise, frozen):
    """The fast path is the same Euler step: equal to rounding in float64, values and gradients
    w.r.t. inputs, initial state and twin weights (frozen twin: the hand-written backward)."""
    twin = _random_sde("euler", n_delay, n_obs=n_obs, delays=delays).double()
    if frozen:
        twin.requires_grad_(False)
    gen = torch.Generator().manual_seed(2)
    u = (torch.rand(16, 9, 1, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    y0 = twin.embed(torch.randn(16, n_obs, generator=gen, dtype=torch.float64)).requires_grad_(True)
    dw = twin.sample_noise(16, 9, generator=gen, dtype=torch.float64) if noise else None
    params = [] if frozen else [twin.f[1].weight, twin.g[0].bias, twin.a_mat, twin.log_tau]
    weight = torch.randn(16, 9, n_obs, generator=gen, dtype=torch.float64)
    results = []
    for fast in (True, False):
        z = integrate(twin.packed(noise), u, y0, method="euler", dw=dw, fast=fast)
        if fast:
            assert (type(z.grad_fn).__name__ == "_SequenceBackward") == frozen
        grads = torch.autograd.grad((z ** 2 * weight).sum(), [u, y0] + params, allow_unused=True)
        results.append((z, grads))
    (za, ga), (zb, gb) = results
    assert za.shape == zb.shape == (16, 9, n_obs)
    with torch.no_grad():                     # a frozen twin without gradients: the same loop
        zn = integrate(twin.packed(noise), u, y0, method="euler", dw=dw)
    assert torch.equal(zn, za) if frozen else torch.allclose(zn, za, rtol=1e-10, atol=1e-10)
    assert torch.allclose(za, zb, rtol=1e-10, atol=1e-10)
    for a, b in zip(ga, gb):
        if b is None:
            assert a is None or not a.any()
        else:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mkl_tuned", [True, False])
@pytest.mark.parametrize("noise", [True, False])
def test_fused_cpu_kernel_keeps_the_step_exact_to_float32_rounding(noise, mkl_tuned, monkeypatch):
    """The frozen-twin sequence's hidden layers run as one fused oneDNN kernel on a CPU in
    float32 (nado.twin._fast._dense); float64 takes the plain mm + sigmoid kernels. Its other
    matmuls (output layers, the backward's products) are MKL's ``mm`` where MKL runs tuned
    kernels and oneDNN matmuls where it does not (``_MKL_TUNED``, by the CPU's vendor): both
    choices are checked here on whatever CPU runs the test. On the same
    twin, inputs and noise (64 trajectories x 30 steps of a random NRA-shaped SDE twin), the
    float32 trajectories and input gradients agree with float64's to float32 rounding as this
    random twin amplifies it over 30 steps. Measured on an Intel Xeon: trajectories 1e-5 relative
    (the plain float32 kernels 8e-6), gradients 1e-5 with noise and 3e-4 without (plain float32
    3e-4, the general path 9e-5). Tolerances 5e-5 and 1e-3; a wrong weight layout, bias or
    activation in the fused kernel would differ by O(1)."""
    from nado.twin import _fast
    if torch.float32 not in _fast._FUSED_DTYPES:
        pytest.skip("this torch build has no oneDNN fused linear: only the plain kernels run")
    monkeypatch.setattr(_fast, "_MKL_TUNED", mkl_tuned)
    real, calls = torch.ops.mkldnn._linear_pointwise, []
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise",
                        lambda *a: calls.append(a[3]) or real(*a))
    twin = _random_sde("euler", 5, delays="learned").requires_grad_(False)
    gen = torch.Generator().manual_seed(4)
    u0 = torch.rand(64, 30, 1, generator=gen) * 2 - 1
    y0 = twin.embed(torch.randn(64, 1, generator=gen))
    dw = twin.sample_noise(64, 30, generator=gen) if noise else None
    weight = torch.randn(64, 30, 1, generator=gen)

    def run(dtype):
        u = u0.to(dtype).requires_grad_(True)
        z = integrate(twin.to(dtype).packed(noise), u, y0.to(dtype), method="euler",
                      dw=None if dw is None else dw.to(dtype))
        assert type(z.grad_fn).__name__ == "_SequenceBackward"
        g = torch.autograd.grad((torch.tanh(z) * weight.to(dtype)).sum(), [u])[0]
        return z.double(), g.double()

    z64, g64 = run(torch.float64)
    assert not calls                                        # float64: the plain kernels only
    z32, g32 = run(torch.float32)
    # per step 2 (ODE) or 4 (SDE) fused hidden layers; the plain layers join them without MKL
    assert calls.count("sigmoid") == 30 * (4 if noise else 2)
    assert calls.count("none") == (0 if mkl_tuned else 30 * (2 if noise else 1) + 30 * (6 if noise else 3))
    calls.clear()                # without gradients (evaluation): the same kernels, forward only
    with torch.no_grad():
        zn = integrate(twin.to(torch.float32).packed(noise), u0, y0, method="euler", dw=dw)
    assert calls.count("sigmoid") == 30 * (4 if noise else 2)
    assert calls.count("none") == (0 if mkl_tuned else 30 * (2 if noise else 1))
    assert torch.equal(zn.double(), z32)
    assert z64.std() > 0.1 and g64.abs().max() > 0
    assert (z32 - z64).abs().max() <= 5e-5 * z64.abs().max()
    assert (g32 - g64).abs().max() <= 1e-3 * g64.abs().max()


def test_mkl_kernels_are_kept_only_where_mkl_runs_its_tuned_code(monkeypatch):
    """MKL picks its kernels by CPU vendor (tuned on Intel, generic elsewhere); an unknown vendor
    keeps the kernels measured on Intel."""
    from nado.twin import _fast
    if not torch.backends.mkl.is_available():
        pytest.skip("this torch build has no MKL")
    for vendor, tuned in (("GenuineIntel", True), ("AuthenticAMD", False), ("HygonGenuine", False),
                          (None, True)):
        monkeypatch.setattr(_fast, "cpu_vendor", lambda v=vendor: v)
        assert _fast._mkl_tuned_here() is tuned


def test_fused_cpu_kernel_is_used_only_where_it_runs_and_is_right(monkeypatch):
    """The fused kernel is probed once on a small layer: a machine where it raises (an old CPU,
    another torch build) or computes something else gets the plain kernels, not an error."""
    from nado.twin import _fast
    if not _fast._fused_cpu_dtypes():
        pytest.skip("this torch build has no oneDNN fused linear")
    real = torch.ops.mkldnn._linear_pointwise

    def raises(*args):
        raise RuntimeError("mkldnn_linear: the bf16 path needs avx512bw")

    def wrong(x, w, b, *rest):
        return real(x, w, None, *rest)                  # drops the bias

    for fake in (raises, wrong):
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", fake)
        assert _fast._fused_cpu_dtypes() == ()
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", real)
    assert torch.float32 in _fast._fused_cpu_dtypes()


def test_simulate_shapes_units_and_noise_switch():
    twin = _random_sde()
    s = torch.rand(8, 12, 1) * 80
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    a = twin.simulate(s, generator=gen())
    b = twin.simulate(s, generator=gen())
    assert a.shape == (8, 12, 1)
    assert torch.equal(a, b)                      # same generator seed, same samples
    assert not torch.equal(a, twin.simulate(s, generator=torch.Generator().manual_seed(5)))
    x0 = torch.full((8, 1), 2.0)
    d1 = twin.simulate(s, x0, noise=False)
    assert torch.equal(d1, twin.simulate(s, x0, noise=False))
    lo, hi = twin.active_range
    assert lo.tolist() == [0.0] and hi.tolist() == [80.0]
    with pytest.raises(ConfigError, match="shape"):
        twin.simulate(torch.zeros(8, 12, 2))
    with pytest.raises(ConfigError, match="x0"):
        twin.simulate(s, torch.zeros(3, 1))


def test_sample_initial_draws_from_reset_samples():
    cfg = TwinConfig(kind="ode", n_in=1, n_obs=2, n_aux=0, n_reset=3)
    reset = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    twin = Twin(cfg, reset)
    x = twin.sample_initial(200, generator=torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in x.tolist()}
    assert rows == {(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)}
    with pytest.raises(ConfigError, match="reset_samples"):
        Twin(cfg, reset[:2])


@pytest.mark.parametrize("kind,method", [("sde", "euler"), ("sde", "heun"), ("ode", "rk4")])
def test_gradients_flow_through_simulate_to_inputs(kind, method):
    torch.manual_seed(0)
    cfg = TwinConfig(kind=kind, n_in=1, n_obs=1, n_aux=10 if kind == "sde" else 0, method=method,
                     input_lo=(0.0,), input_hi=(80.0,))
    twin = Twin(cfg)
    for p in twin.parameters():
        p.requires_grad_(False)
    s = (torch.rand(4, 10, 1) * 80).requires_grad_(True)
    out = twin.simulate(s, torch.zeros(4, 1), generator=torch.Generator().manual_seed(0))
    out[:, -1].sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert s.grad[:, 0].abs().sum() > 0           # the last output depends on the first input
    # finite-difference check of one entry (float64 twin)
    twin = twin.double()
    s64 = (torch.rand(2, 6, 1, dtype=torch.float64) * 80).requires_grad_(True)
    x0 = torch.zeros(2, 1, dtype=torch.float64)
    f = lambda v: twin.simulate(v, x0, noise=False)[:, -1].sum()  # noqa: E731
    f(s64).backward()
    eps = 1e-4
    bump = torch.zeros_like(s64)
    bump[0, 2, 0] = eps
    fd = (f(s64.detach() + bump) - f(s64.detach() - bump)) / (2 * eps)
    assert abs(float(fd) - float(s64.grad[0, 2, 0])) < 1e-6 * max(1.0, abs(float(fd)))


def test_checkpoint_round_trip(tmp_path):
    twin = _random_sde()
    path = save_twin(twin, tmp_path / "twin.pt")
    meta = json.loads((tmp_path / "twin.json").read_text())
    assert meta["version"] == 1 and meta["config"]["kind"] == "sde"
    back = load_twin(path)
    assert back.config == twin.config
    s = torch.rand(5, 7, 1) * 80
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    assert torch.equal(back.simulate(s, generator=g()), twin.simulate(s, generator=g()))
    assert not list(tmp_path.glob(".twin*"))      # no temp files left behind


def test_checkpoint_errors_are_clear(tmp_path):
    twin = _random_sde()
    path = save_twin(twin, tmp_path / "twin.pt")
    meta_path = tmp_path / "twin.json"
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(CheckpointError, match="version 99"):
        load_twin(path)

    wrong = dict(meta, config={**meta["config"], "width": 32})
    meta_path.write_text(json.dumps(wrong))
    with pytest.raises(CheckpointError, match="wrong shapes.*f.0.weight"):
        load_twin(path)

    wrong = dict(meta, config={**meta["config"], "kind": "ode", "n_aux": 0})
    meta_path.write_text(json.dumps(wrong))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_twin(path)

    wrong = dict(meta, config={**meta["config"], "colour": 1})
    meta_path.write_text(json.dumps(wrong))
    with pytest.raises(CheckpointError, match="unknown keys"):
        load_twin(path)

    meta_path.unlink()
    with pytest.raises(CheckpointError, match="no such file"):
        load_twin(path)
    assert issubclass(CheckpointError, ValueError)


def test_config_validation_and_json_round_trip():
    cfg = TwinConfig(kind="sde", n_in=2, n_obs=3, input_lo=(0, 1), input_hi=(2, 3))
    assert TwinConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="method"):
        TwinConfig(kind="ode", n_in=1, n_obs=1, n_aux=0, method="heun")
    with pytest.raises(ConfigError, match="n_aux"):
        TwinConfig(kind="ode", n_in=1, n_obs=1)
    with pytest.raises(ConfigError, match="input_hi"):
        TwinConfig(kind="ode", n_in=1, n_obs=1, n_aux=0, input_lo=(5,), input_hi=(5,))
    with pytest.raises(ConfigError, match="version"):
        TwinConfig.from_dict({**cfg.to_dict(), "version": 0})


def test_bench_section_quick_reports_targets(monkeypatch):
    from nado.bench import sections, twin
    # a smaller layer keeps the test short; `nado bench --quick` measures the full layer
    monkeypatch.setitem(twin.LAYER, "nodes", 10)
    monkeypatch.setitem(twin.LAYER, "batch", 16)
    result = sections()["twin"](True)
    assert result["nodes"] == 10 and result["rounds"] == 3
    assert set(result["targets"]) == {"speedup_vs_torchsde", "fraction_of_matmul_flops",
                                      "backprop_bytes_per_step"}
    assert result["ours_fwbw_steps_per_s"] > 0 and result["torchsde_fwbw_steps_per_s"] > 0
    # 4 bytes x (64 + 64 + 64 + 64 sigmoid outputs + 11 diffusion terms) ~ 1.07 KB per step
    assert 1000 < result["ours_backprop_bytes_per_step"] < 1150
    # bfloat16 matmuls: 2 bytes x 256 activations + 4 bytes x 11 diffusion terms ~ 0.56 KB
    assert 500 < result["bf16_backprop_bytes_per_step"] < 600
    assert result["speedup_fwbw_bf16_vs_float32"] > 0


def test_substeps_and_dtypes():
    torch.manual_seed(0)
    cfg = TwinConfig(kind="sde", n_in=1, n_obs=2, n_delay=2, n_aux=3, substeps=4,
                     input_lo=(0.0,), input_hi=(80.0,))
    twin = Twin(cfg)
    s = torch.rand(16, 9, 1, dtype=torch.float64) * 80        # float64 in, float32 twin
    out = twin.simulate(s, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 9, 2) and out.dtype == torch.float32
    assert twin.sample_noise(16, 9).shape == (36, 16, 5)
    # with noise off, 4 Euler substeps of an ODE step approach the RK4 path of the same drift
    ode = Twin(TwinConfig(kind="ode", n_in=1, n_obs=2, n_delay=2, n_aux=0, method="rk4",
                          input_lo=(0.0,), input_hi=(80.0,)))
    ode.f.load_state_dict(twin.f.state_dict())
    x0 = torch.zeros(16, 2)
    fine = Twin(cfg.replace(substeps=64))
    fine.load_state_dict(twin.state_dict())
    rk4 = ode.simulate(s, x0)
    assert (fine.simulate(s, x0, noise=False) - rk4).abs().max() < 2e-3


def test_readout_noise_is_reported_not_carried():
    """``readout_std``: the reported observable is the state plus white noise of that std; the
    state (what the drift sees next) is the noise-free path - the same trajectory as without it."""
    cfg = TwinConfig(kind="sde", n_in=1, n_obs=2, n_delay=2, n_aux=3, readout_std=(0.5, 0.0))
    torch.manual_seed(0)
    twin = Twin(cfg)
    u = torch.rand(400, 30, 1) * 2 - 1
    z0 = torch.zeros(400, 2)
    zero_dw = torch.zeros(30, 400, cfg.n_noise)                 # no process noise
    with torch.no_grad():
        clean = twin.simulate_normalised(u, z0, noise=False)
        read = twin.simulate_normalised(u, z0, dw=zero_dw, generator=torch.Generator().manual_seed(1))
    e = (read - clean).numpy()
    assert abs(e[..., 0].std() - 0.5) < 0.02 and np.abs(e[..., 1]).max() < 1e-5
    lag1 = np.corrcoef(e[:, :-1, 0].ravel(), e[:, 1:, 0].ravel())[0, 1]
    assert abs(lag1) < 0.03, lag1                                # white: not fed back into the state
    for bad in ({"readout_std": (0.1,)}, {"readout_std": (-0.1, 0.0)}):
        with pytest.raises(ConfigError, match="readout_std"):
            cfg.replace(**bad)
    with pytest.raises(ConfigError, match="readout_std"):
        TwinConfig(kind="ode", n_in=1, n_obs=1, n_aux=0, readout_std=(0.1,))
    assert TwinConfig.from_dict(cfg.to_dict()) == cfg


def test_bfloat16_matmuls_keep_trajectories_and_gradients_of_a_frozen_twin():
    """matmul_precision("bfloat16"): the frozen-twin sequence (network training) runs its MLPs in
    bf16 with the state in float32. Tolerances, for an NRA-sized SDE twin (its initial weights,
    a stable twin as fitted ones are; a chaotic random twin amplifies any rounding) over 20 noisy
    steps: the rms difference below 1 % of the trajectories' std and the largest below 5 % (bf16
    rounds each activation by <= 0.4 %; the NRA's per-step noise is 30-70 % of its signal); the
    input gradient's direction within 1 % (cosine > 0.99). Saved activations take half the bytes;
    "float32" is the default exactly."""
    from nado.twin.precision import matmul_precision

    torch.manual_seed(0)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=5, n_aux=10, input_lo=(0.0,),
                           input_hi=(80.0,)))
    with torch.no_grad():
        twin.a_mat.normal_(0, 0.5)                 # the auxiliaries colour the noise
    twin.requires_grad_(False)
    gen = torch.Generator().manual_seed(3)
    u0 = torch.rand(256, 20, 1, generator=gen) * 2 - 1
    y0 = twin.embed(torch.randn(256, 1, generator=gen))
    dw = twin.sample_noise(256, 20, generator=gen)
    weight = torch.randn(256, 20, 1, generator=gen)

    def run(precision):
        u = u0.clone().requires_grad_(True)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            if precision is None:
                z = integrate(twin.packed(True), u, y0, method="euler", dw=dw)
            else:
                with matmul_precision(precision):
                    z = integrate(twin.packed(True), u, y0, method="euler", dw=dw)
        (g,) = torch.autograd.grad((torch.tanh(z) * weight).sum(), [u])   # backward outside the block
        per_trajectory = [t for t in saved if t.shape[:1] == (u0.shape[0],)]   # not the weights
        return z, g, sum(t.numel() * t.element_size() for t in per_trajectory)

    z32, g32, b32 = run(None)
    z_same, g_same, _ = run("float32")
    zbf, gbf, bbf = run("bfloat16")
    assert torch.equal(z32, z_same) and torch.equal(g32, g_same)
    with torch.no_grad(), matmul_precision("bfloat16"):    # no gradient path: float32 exactly
        assert torch.equal(integrate(twin.packed(True), u0, y0, method="euler", dw=dw), z32)
    assert z32.std() > 0.3 and zbf.dtype == torch.float32
    err = (zbf - z32).abs()
    assert err.pow(2).mean().sqrt() < 0.01 * z32.std() and err.max() < 0.05 * z32.std()
    cos = torch.nn.functional.cosine_similarity(gbf.flatten(), g32.flatten(), dim=0)
    assert cos > 0.99, cos
    assert bbf < 0.6 * b32, (bbf, b32)


def test_matmul_precision_validates_nests_and_restores():
    from nado.twin.precision import current_matmul_dtype, matmul_precision

    with pytest.raises(ConfigError, match="precision.*float16.*bfloat16"):
        with matmul_precision("float16"):
            pass
    assert current_matmul_dtype() is None
    with matmul_precision("bfloat16"):
        with matmul_precision("float32"):
            assert current_matmul_dtype() == torch.float32
        assert current_matmul_dtype() == torch.bfloat16
        with pytest.raises(RuntimeError):
            with matmul_precision("float32"):
                raise RuntimeError("inside")
        assert current_matmul_dtype() == torch.bfloat16
    assert current_matmul_dtype() is None


def test_bench_network_peak_excludes_memory_an_earlier_section_freed():
    """``nado bench`` runs its sections in one process, with the ``nado`` command's malloc setting
    that keeps freed blocks; the network section's peak must start from what is in use, not from
    what an earlier section (the twin section's torchsde baseline) allocated and freed."""
    import sys

    from nado.bench.network import _peak_rss_bytes, _reset_peak_rss
    from nado.cli._malloc import tune_allocator
    if not sys.platform.startswith("linux") or not tune_allocator():
        pytest.skip("needs Linux with glibc (clear_refs, mallopt)")
    blocks = [torch.ones(2_500_000) for _ in range(100)]       # 100 x 10 MB, below the mmap threshold
    held = _peak_rss_bytes()
    del blocks
    assert _reset_peak_rss()
    assert _peak_rss_bytes() < held - 500 * 2 ** 20, (held, _peak_rss_bytes())
