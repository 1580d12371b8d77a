"""``nado bench`` section ``twin``: throughput, memory and FLOP/s of the twin integrator.

A layer of ``N`` NRA-sized neural-SDE twins (1 observable, 5 delays: a 6-dim state; 10 auxiliary
variables; MLPs of width 64, depth 2; Euler-Maruyama, one step per sample) driven by a batch of
``B`` input sequences of ``T`` steps through trainable input weights ``W`` (F features -> N
nodes); twin weights frozen, the loss is backpropagated to ``W`` (as when training a network).
Measured in the same run, on the identical SDE (same packed weights):

- our integrator (:func:`nado.twin.integrate.integrate`; here its packed Euler step,
  :mod:`nado.twin._fast`), eager, and with ``torch.compile`` of the step (full run only; compile
  time reported separately);
- ``torchsde.sdeint`` (method ``euler``, dt = 1, its default Brownian motion) on the paper's full
  state (:mod:`nado.twin.reference`), with ``f_and_g_prod`` so both networks run once per step
  (the fair baseline, used for the target), and for information the plain torchsde style with
  separate ``f`` and ``g`` methods (``torchsde_plain_fg_*``), which runs the networks twice.

All paths run interleaved (``repeats`` rounds of: ours, compiled, torchsde; forward then
forward+backward), so they see the same machine load; each figure is the median over the rounds,
with its ``_range`` (min, max) beside it and the per-round eager speedup range.

Figures: device-steps/s (N * B * T / seconds) for forward and forward+backward; backprop memory =
bytes of the unique tensors autograd saves for the backward pass (counted with
``torch.autograd.graph.saved_tensors_hooks``; this is what grows with N * B * T), per
device-step; matmul FLOPs per device-step of the step (forward; forward+backward counts the
input-gradient matmuls again, no weight gradients as the twin is frozen); achieved FLOP/s beside a
1024 x 1024 matmul's FLOP/s measured in the same process.

Mixed precision (``bf16_*``, :mod:`nado.twin.precision`): the same forward+backward with the
twin's MLP matmuls in bfloat16, timed in the same rounds: its speedup over torchsde and over our
float32 path, its FLOP/s against a bfloat16 1024 x 1024 matmul of the same round, and its
backprop bytes. The targets are measured on float32, the identical SDE torchsde integrates.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from nado.bench import target
from nado.device import generator, synchronize
from nado.twin.precision import matmul_precision

SECTION = "twin"
LAYER = {"nodes": 200, "batch": 128, "steps": 40, "features": 16}   # the full layer, also --quick


def _twin(seed: int = 0, device: torch.device = torch.device("cpu")):
    from nado.twin import Twin, TwinConfig
    torch.manual_seed(seed)
    twin = Twin(TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=5, n_aux=10, width=64, depth=2,
                           input_lo=(0.0,), input_hi=(80.0,))).to(device)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def _flops_per_step(twin) -> float:
    c = twin.config
    h = c.width
    first = 2 * (c.state_dim + c.n_in) * 2 * h
    hidden = 2 * 2 * h * h * (c.depth - 1)
    f_out = c.state_dim if (c.delays == "learned" and c.n_delay) else c.n_obs
    out = 2 * h * (f_out + c.n_noise)
    return float(first + hidden + out)


def _matmul_flops(quick: bool, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    a = torch.randn(1024, 1024, device=device, dtype=dtype)
    b = torch.randn(1024, 1024, device=device, dtype=dtype)
    a @ b
    reps = (3 if quick else 10) * (10 if device.type == "cuda" else 1)
    synchronize(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * 1024 ** 3 * reps / (time.perf_counter() - t)


class _SavedBytes:
    """Sum of the unique storages autograd saves for backward while active."""

    def __init__(self):
        self.seen: dict[int, int] = {}

    def pack(self, t: torch.Tensor):
        st = t.untyped_storage()
        self.seen[st.data_ptr()] = st.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def run(quick: bool, device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    from nado.twin import integrate as integ
    from nado.twin.reference import sdeint_reference

    device = torch.device(device)
    n_nodes, batch, steps, feats = (LAYER[k] for k in ("nodes", "batch", "steps", "features"))
    twin = _twin(device=device)
    gen = generator(device, 0)
    x = torch.randn(batch, steps, feats, generator=gen, device=device)
    w = (torch.randn(feats, n_nodes, generator=gen, device=device) * 0.3).requires_grad_(True)
    z0 = twin.normalise_obs(torch.zeros(batch * n_nodes, 1, device=device))
    dev_steps = n_nodes * batch * steps

    def inputs() -> torch.Tensor:
        s = torch.sigmoid(x @ w) * 80.0                                  # (B, T, N), Oe
        return twin.normalise_inputs(s.permute(0, 2, 1).reshape(batch * n_nodes, steps, 1))

    def ours(compile: bool = False) -> torch.Tensor:
        p = twin.packed(True)
        dw = twin.sample_noise(batch * n_nodes, steps, generator=gen)
        return integ.integrate(p, inputs(), twin.embed(z0), method="euler", dw=dw, compile=compile)

    def compiled() -> torch.Tensor:
        return ours(compile=True)

    def bf16() -> torch.Tensor:
        with matmul_precision("bfloat16"):
            return ours()

    def ref() -> torch.Tensor:
        return sdeint_reference(twin.packed(True), inputs(), twin.embed(z0), method="euler")

    def ref_plain() -> torch.Tensor:
        return sdeint_reference(twin.packed(True), inputs(), twin.embed(z0), method="euler",
                                fused=False)

    def timed(fn: Callable[[], torch.Tensor], backward: bool) -> float:
        w.grad = None
        synchronize(device)
        t = time.perf_counter()
        if not backward:
            with torch.no_grad():
                fn()
            synchronize(device)
            return dev_steps / (time.perf_counter() - t)
        (fn() ** 2).mean().backward()
        synchronize(device)
        dt = time.perf_counter() - t
        if w.grad is None or not torch.isfinite(w.grad).all():
            raise RuntimeError("bench twin: no finite gradient reached the input weights")
        return dev_steps / dt

    def saved_bytes(fn: Callable[[], torch.Tensor]) -> float:
        saved = _SavedBytes()
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            out = fn()
        (out ** 2).mean().backward()
        return saved.total / dev_steps

    result: dict[str, Any] = {"nodes": n_nodes, "batch": batch, "steps": steps,
                              "threads": torch.get_num_threads(), "device": str(device)}
    paths = {"ours": ours, "torchsde": ref}
    if not quick:
        try:                      # compile the packed step once (its time reported apart)
            t = time.perf_counter()
            timed(compiled, True)
            timed(compiled, False)
            result["compile_s"] = time.perf_counter() - t
            paths["compiled"] = compiled
        except Exception as exc:  # a missing C compiler must not sink the whole bench
            result["compile_error"] = f"{type(exc).__name__}: {exc}"[:300]
    for fn in (ours, ref):
        timed(fn, True)                                 # warm-up (allocator, first-call costs)
    # interleaved rounds: every path sees the same load; medians and spread reported
    repeats = 3 if quick else 7
    result["rounds"] = repeats
    runs: dict[str, list[float]] = {f"{k}_{m}": [] for k in paths for m in ("forward", "fwbw")}
    runs["bf16_fwbw"] = []            # bfloat16 matmuls change only the gradient path
    mms: list[float] = []
    mms_bf16: list[float] = []
    timed(bf16, True)
    for _ in range(repeats):
        mms.append(_matmul_flops(quick, device))   # the matmul reference sees the same load
        mms_bf16.append(_matmul_flops(quick, device, torch.bfloat16))
        for name, fn in paths.items():
            runs[f"{name}_forward"].append(timed(fn, False))
            runs[f"{name}_fwbw"].append(timed(fn, True))
        runs["bf16_fwbw"].append(timed(bf16, True))
    for key, vals in runs.items():
        result[f"{key}_steps_per_s"] = statistics.median(vals)
        result[f"{key}_steps_per_s_range"] = [min(vals), max(vals)]
    flops = _flops_per_step(twin)
    # per-round ratios (each against the same round's torchsde / matmul): the spread over rounds
    speed = [a / b for a, b in zip(runs["ours_fwbw"], runs["torchsde_fwbw"])]
    frac_fw = [flops * a / m for a, m in zip(runs["ours_forward"], mms)]
    frac_fwbw = [2 * flops * a / m for a, m in zip(runs["ours_fwbw"], mms)]
    result["speedup_fwbw_eager_per_round"] = speed
    result["speedup_fwbw_eager_median_of_rounds"] = statistics.median(speed)
    result["fraction_of_matmul_forward_per_round"] = frac_fw
    result["fraction_of_matmul_fwbw_per_round"] = frac_fwbw
    speed_bf16 = [a / b for a, b in zip(runs["bf16_fwbw"], runs["torchsde_fwbw"])]
    result["speedup_fwbw_bf16_per_round"] = speed_bf16
    result["speedup_fwbw_bf16_vs_torchsde"] = statistics.median(speed_bf16)
    result["speedup_fwbw_bf16_vs_float32"] = statistics.median(
        [a / b for a, b in zip(runs["bf16_fwbw"], runs["ours_fwbw"])])
    result["bf16_matmul_flops"] = statistics.median(mms_bf16)
    result["fraction_of_bf16_matmul_fwbw"] = statistics.median(
        [2 * flops * a / m for a, m in zip(runs["bf16_fwbw"], mms_bf16)])
    result["torchsde_plain_fg_fwbw_steps_per_s"] = timed(ref_plain, True)
    result["ours_backprop_bytes_per_step"] = saved_bytes(ours)
    result["torchsde_backprop_bytes_per_step"] = saved_bytes(ref)
    result["bf16_backprop_bytes_per_step"] = saved_bytes(bf16)
    best_fwbw, best_fw = result["ours_fwbw_steps_per_s"], result["ours_forward_steps_per_s"]
    if "compiled" in paths:
        best_fwbw = max(best_fwbw, result["compiled_fwbw_steps_per_s"])
        best_fw = max(best_fw, result["compiled_forward_steps_per_s"])
    mm = statistics.median(mms)
    result["matmul_flops_range"] = [min(mms), max(mms)]
    result.update({
        "flops_per_step_forward": flops,
        "flops_per_step_fwbw": 2 * flops,
        "achieved_flops_forward": flops * best_fw,
        "achieved_flops_fwbw": 2 * flops * best_fwbw,
        "matmul_flops": mm,
        "speedup_fwbw_vs_torchsde": best_fwbw / result["torchsde_fwbw_steps_per_s"],
        "speedup_fwbw_eager_vs_torchsde": (result["ours_fwbw_steps_per_s"]
                                           / result["torchsde_fwbw_steps_per_s"]),
        "speedup_forward_vs_torchsde": best_fw / result["torchsde_forward_steps_per_s"],
    })
    result["targets"] = {
        "speedup_vs_torchsde": target(statistics.median(speed), 4.0),
        "fraction_of_matmul_flops": target(statistics.median(frac_fwbw), 0.40),
        "backprop_bytes_per_step": target(result["ours_backprop_bytes_per_step"], 1100,
                                          at_least=False),
    }
    return result
