"""``nado bench`` section ``network``: one training step of the paper-sized MNIST network.

784 inputs -> 2 hidden layers of 200 NRA nodes -> 10 outputs, 4 frames, batch 128, full BPTT
through SDE twins (an untrained twin with the NRA shape: 1 input 0..80 Oe, 1 observable, 5
delays, 10 auxiliary noise variables, MLPs of width 64 and depth 2; timing does not depend on the
weights). Measures samples/s of forward + backward + Adam step (with 1 or 2 intra-op threads,
whichever is faster now: on a loaded 2-core machine 2 threads were several times slower), the
spread over the timed steps, the peak resident memory of the process from this section's start
(the kernel's peak count is reset first; on a GPU: the peak device memory), and
extrapolates the time of an epoch of 60,000 samples. Both precisions of ``[train] precision``
(:mod:`nado.twin.precision`: the frozen twins' matmuls in float32 or bfloat16) are timed in
interleaved steps; the top-level figures are float32's, ``by_precision`` has both, and the epoch
target is checked on the faster (``best_precision``); ``auto_precision`` is what ``precision =
"auto"`` picks on this device (``native_bfloat16``), which should be the faster. Targets (issue
14): epoch <= 40 s on 2 cores, peak memory < 2 GiB at batch 128 (the peak of the section, both precisions). ``quick``
runs fewer steps, same size. ``device``: see :mod:`nado.device` (``nado bench --device cuda``).

Where the time goes (``torch.profiler``, one thread, two training steps, 2026-12-03 on the shared
2-core AMD EPYC at load average ~17-20, so absolute times are several times the unloaded ones):
91 % is the twin integration (:class:`nado.twin._fast._Sequence`: 44 % forward, 48 % its
hand-written backward), 4.5 % the connection matmuls (784 -> 200 -> 200 -> 10), 3 % drawing the
Brownian increments, 0.5 % Adam, the rest reshapes. Inside the twin step (one layer, 25,600
trajectories x 4 steps, self CPU time): matmuls 73 % - the 64 x 64 hidden layer of the drift and
diffusion MLPs 36 % (forward ``baddbmm`` 14.5 %, backward ``bmm`` 21 %), the skinny first and output
layers (K or N <= 18) 37 % although they carry a third of the FLOPs (MKL runs them at 3-10 GFLOP/s
here against 15-24 GFLOP/s for the square ones); sigmoid forward 8 % and backward 4.6 %; softplus,
noise and copies the rest. Options measured (ratios in one run, same load):
splitting the 25,600 rows into cache-sized blocks gave no significant gain (median 0.97-1.03x
over 10 rounds), so it is not used; a smaller twin is the lever: step speedup over width 64 /
depth 2 of 1.9x at width 32, 1.8x at depth 1, 2.6x at 32 x 1, 3.1x at width 16 (6 rounds each) -
but every smaller twin fitted to the same NRA data had a 3-16 % larger SDE W1 and a 5-29 % larger
mean error in the twin report (README, "Where the time of a paper-scale run goes"), so the default
stays width 64, depth 2.

Mixed precision (2026-12-03, quiet machine, load average < 2, one run, 7 interleaved steps each):
with the twins' MLP matmuls in bfloat16 (``[train] precision``, :mod:`nado.twin.precision`) the
step takes 0.142 s against float32's 0.245 s (1.71x; epoch 67 s vs 115 s); this CPU has
AVX512-BF16, where a 64 x 64 bf16 ``bmm`` over 25,600 rows runs ~7x faster than in float32. The
matmuls then no longer dominate: in the bf16 step (profile, 2 threads) the bf16 ``sigmoid`` is 15 %
(it converts to float32 inside), the hidden ``bmm``/``baddbmm`` 40 %, broadcasting the bias of
``baddbmm`` into its output 7 %, drawing the Brownian increments 6.5 %.

Another CPU (2026-12-07, session 6: an Intel Xeon at 2.8 GHz with AVX512 but no bf16
instructions, two other jobs on its 2 cores): float32 0.32 s per step (epoch 151 s, 137-221 s over
the steps, 2 threads), bfloat16 0.50 s - torch emulates bf16 there and it is 0.66x float32's
speed, which is why ``precision = "auto"`` takes bf16 only where the CPU's flags name it
(``auto_precision`` here: float32). Profile of the float32 step (one thread): ``bmm`` 51 %,
``baddbmm`` 12 %, ``sigmoid_`` 7 %, ``sigmoid_backward`` 7 %, copies 7 %, Brownian increments 2 %.
In isolation MKL ran the skinny first layer (25,600 x 13 @ 13 x 64, two groups) 2.4x faster as one
``mm`` per group than as one ``bmm``, and the 64 x 64 hidden layer 1.4x faster without the bias
broadcast of ``baddbmm``; but the training step with per-group ``mm``/``addmm`` throughout was
0.96x (float32) and 0.98x (bfloat16) of the ``bmm`` version (median of 6 interleaved per-round
ratios, same gradients to 4e-7), so it was not adopted.

Why the 40 s target is out of reach in float32 on that CPU (2026-12-07, session 7, the same Intel
Xeon, one core measured while a training run held the other): MKL's float32 rates at the twin
step's shapes (two groups of 25,600 rows) are 70 GFLOP/s for the 64 x 64 hidden layer (``bmm``;
63 with ``baddbmm``'s bias), 29-35 for the first layer (8 -> 64), 33-36 for the output layer
(64 -> 18), 48 and 24 for the backward's 18 -> 64 and 64 -> 8, against 115 for a 2048^3 matmul.
A device-step holds 47.4 kFLOP of matmuls (23.0 k forward, as many backward: input gradients
only, the twin is frozen) and a training step 204,800 device-steps, so at those rates the matmuls
alone take 0.18 s of one core per step, 48 % of the measured one-thread step (0.38 s). With every
elementwise kernel fused away and perfect scaling to 2 threads an epoch would still take
60,000 / 128 x 0.18 s / 2 = 42 s. ``torch.compile`` (inductor, default mode) of the frozen twin's
forward and backward steps, with gradients equal to 5.5e-7, ran the training step at 0.98x (both
steps compiled) and 1.04x (the backward only) of eager, medians of 5 interleaved rounds, one
thread: not adopted. What would reach the target is fewer FLOPs (a smaller twin: its fidelity
cost is measured in the README) or faster ones (native bf16, 1.71x on the AMD; a GPU).

Fused hidden layers (2026-12-07, session 10, the same Intel Xeon, quiet, load < 1): the frozen
twin's forward runs each network's hidden layers as one oneDNN matmul + bias + sigmoid kernel
(:func:`nado.twin._fast._dense`) instead of ``bmm``/``baddbmm`` then ``sigmoid_``, and the
diffusion's output layer computes only its 11 heads. Training step against the ``bmm`` chain,
interleaved, allocator tuned as under ``nado``: 1.17x with one thread (median of 10 rounds,
1.03-1.40x; 0.297 s against 0.341 s) and 1.05x with two (20 rounds, 0.84-1.26x); parameter
gradients equal to 7e-7 relative. Profile after (one thread, two steps): ``mm`` 34 % (the
backward and the output layers), the fused kernels 31 %, ``sigmoid_backward`` 10 %, ``addmm``
(the state update) 4 %, copies 4 %, Brownian increments 2.6 %, ``softplus`` 2 %. Two threads
gain little on this machine whatever the kernel: one 25,600 x 64 @ 64 x 64 matmul runs 1.2-1.5x
faster on two threads than on one (``bmm`` over the two networks 1.46x, the fused kernel 1.34x),
elementwise kernels 1.9x; the committed MNIST runs train one network per one-thread process,
two side by side (``results/mnist_nra/RUN.md``), where the one-thread figure applies. Measured and not adopted in the same session: folding the
backward's sigmoid derivative into the matmul as a oneDNN binary post-op (it needs
``s (1 - s)`` stored by the forward; that pass costs 0.79 ms per network and layer, the fusion
saves 0.65 ms).

A third CPU (2026-12-07, session 11: a 2-core AMD EPYC, Zen 3, AVX2 only, quiet): MKL runs
generic kernels on it (it picks kernels by CPU vendor), and the twin's skinny matmuls ran 1.6-5x
slower in ``mm`` than in oneDNN (one thread, 25,600 rows: 64 -> 8 of the backward 2.17 ms against
0.44 ms, the 64 -> 11 diffusion head 3.35 against 0.85, 64 -> 19 1.75 against 1.08, the 64 x 64
layer 2.79 against 2.48); with MKL's vendor check overridden for the measurement ``mm`` was the
faster everywhere (0.36 ms, 0.65, 1.01, 2.18). Profile of the training step there before the
change (one thread, two steps): ``mm`` 44 %, the fused kernels 29 %, ``addmm`` 6 %,
``sigmoid_backward`` 5 %, Brownian increments 2.7 %, ``softplus`` 2.2 %. Since then every twin
matmul of the frozen-twin sequence runs in oneDNN on such a CPU (:mod:`nado.twin._fast`): the
training step 1.17x with one thread, 1.10x with two (medians of 12 and 20 interleaved rounds,
parameter gradients equal to 8e-7); profile after (one thread, two steps, 620 ms against 699):
oneDNN matmuls 71 %, ``sigmoid_backward`` 6.6 %, ``mm`` 3.2 % (the 19 x 19 state products),
Brownian increments 2.9 %, ``softplus`` 2.4 %, copies 1.9 %. bfloat16 is emulated there and 16x slower than float32
(``precision = "auto"`` takes float32).
"""
from __future__ import annotations

import ctypes
import gc
import resource
import statistics
import time

SECTION = "network"


def _nra_twin():
    from nado.twin import Twin, TwinConfig
    cfg = TwinConfig(kind="sde", n_in=1, n_obs=1, n_delay=5, n_aux=10, width=64, depth=2,
                     method="euler", input_lo=(0.0,), input_hi=(80.0,), obs_mean=(0.0,),
                     obs_std=(1.0,), n_reset=1)
    return Twin(cfg)


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS count (Linux ``clear_refs``), so the peak measured next is
    this section's and not an earlier section's in the same process; False where unsupported.
    Memory an earlier section left is first collected (its autograd graphs hold reference cycles)
    and handed back to the kernel (glibc ``malloc_trim``):
    the ``nado`` command keeps freed blocks in the process (:mod:`nado.cli._malloc`), and the count
    restarts from the resident size, so without the trim ``nado bench`` reported the twin
    section's torchsde peak (7.6 GiB) as the network step's."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):                   # not glibc: nothing kept to hand back
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """Peak resident memory of the process since the last reset (``VmHWM``), else ever."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024                      # kB
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024   # Linux: KiB


def run(quick: bool, device="cpu") -> dict:
    import torch
    import torch.nn.functional as F

    from nado.bench import target
    from nado.device import generator, synchronize
    from nado.network import Network
    from nado.twin.precision import PRECISIONS, matmul_precision, native_bfloat16, resolve_precision

    device = torch.device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    batch, T, n_in, nodes, n_out = 128, 4, 784, (200, 200), 10
    steps = 3 if quick else 7
    torch.manual_seed(0)
    twin = _nra_twin().to(device)
    net = Network([twin, twin], nodes, n_in, n_out, seed=0)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    gen = generator(device, 0)
    x = torch.rand(batch, T, n_in, generator=gen, device=device)
    y = torch.randint(0, n_out, (batch,), generator=gen, device=device)

    def step(precision: str = "float32"):
        with matmul_precision(precision):
            out = net(x, noise=True, generator=gen).outputs
        loss = F.cross_entropy(out[:, -1], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        synchronize(device)

    peak_reset = _reset_peak_rss()
    rss0 = _peak_rss_bytes()
    step()                                     # warm-up (allocations, kernels)
    # intra-op threads: on a shared 2-core machine 2 threads were 7-9x SLOWER than 1 here
    # (0.27-0.36 s vs 2.5-2.6 s per step at load average ~2); time one step with each
    # candidate and measure with the faster, reporting both
    by_threads = {}
    for th in sorted({1, min(2, threads)}):
        torch.set_num_threads(th)
        step()
        t0 = time.perf_counter()
        step()
        by_threads[th] = time.perf_counter() - t0
    best_threads = min(by_threads, key=by_threads.get)
    torch.set_num_threads(best_threads)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step("bfloat16")                           # warm-up of the bf16 kernels
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(steps):                     # interleaved: both precisions see the same load
        for precision in PRECISIONS:
            t0 = time.perf_counter()
            step(precision)
            times[precision].append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else _peak_rss_bytes())
    torch.set_num_threads(threads)
    by_precision = {}
    for precision, ts in times.items():
        dt = statistics.median(ts)
        by_precision[precision] = {
            "step_s": dt, "step_s_range": [min(ts), max(ts)], "samples_per_s": batch / dt,
            "epoch_60k_s": 60000 / batch * dt,
            "epoch_60k_s_range": [60000 / batch * min(ts), 60000 / batch * max(ts)]}
    best = min(by_precision, key=lambda p: by_precision[p]["step_s"])
    epoch_s = by_precision[best]["epoch_60k_s"]
    peak_gib = peak / 2 ** 30
    return {
        "batch": batch, "frames": T, "nodes": list(nodes), "inputs": n_in, "outputs": n_out,
        "device": str(device), **by_precision["float32"], "by_precision": by_precision,
        "best_precision": best, "native_bfloat16": native_bfloat16(device),
        "auto_precision": resolve_precision("auto", device),
        "speedup_bfloat16_vs_float32": statistics.median(
            [a / b for a, b in zip(times["float32"], times["bfloat16"])]),
        "peak_memory_gib": peak_gib, "peak_memory_kind": "cuda_allocated" if device.type == "cuda"
        else "host_rss", "peak_rss_before_gib": rss0 / 2 ** 30, "peak_rss_reset": peak_reset,
        "threads": best_threads,
        "step_s_by_threads": {str(k): v for k, v in by_threads.items()},
        "targets": {
            "train_epoch_60k_s": target(epoch_s, 40.0, at_least=False),
            "train_peak_memory_gib": target(peak_gib, 2.0, at_least=False),
        },
    }
