"""Fast path of the integrator: one-step Euler(-Maruyama) with both networks packed side by side.

Used by :func:`nado.twin.integrate.integrate` whenever ``method="euler"`` and ``substeps == 1``
(the networks' case: one step per input sample), for an ODE, an SDE, or an SDE with noise off.
It computes exactly the same Euler step as the general path (same folded weights, see
:func:`nado.twin.integrate._fold`), only arranged so that a step is a handful of large kernels
and no ``cat``/``stack``/slice-scatter per step.

Layout. One row per trajectory, ``C = n_in + 1 + D + N_a`` columns::

    Y = [ u (n_in) | 1 | z(t-n_delay) ... z(t-1) z(t) (D) | a (N_a) ]

The first-layer input of both MLPs is the contiguous prefix ``Y[:, :K]`` (``K = n_in + 1 + D``;
the constant 1 carries the first-layer bias, so the input part needs no per-step bias copy and
the ``(T, B, H)`` input pre-activations of the general path are never stored), and the noisy
coordinates ``(z(t), a)`` are the contiguous suffix ``Y[:, C - N_w:]`` in the order of ``dW``.
The drift ``f`` and diffusion ``g`` MLPs run as one batched matmul chain over a ``(2, B, H)``
hidden state (``bmm``/``baddbmm``, sigmoids in place). One step::

    P   = sigmoid(bmm(Y[:, :K], W1))                    (2, B, H)   [f | g]
    P   = sigmoid(baddbmm(b, P, W))                      per hidden layer
    Y'  = Y @ M + P[0] @ Wf                              shift, A a, -a / tau, f, biases
    Y'[:, C - N_w:] += softplus(P[1] @ Wg + bg) * dW_t   (Euler-Maruyama noise)
    Y'[:, :n_in] = u_{t+1}

``M`` (C, C) holds the delay shift, ``h A``, ``1 - h / tau`` and the drift's output bias
(through the constant column). Autograd saves per device-step the two hidden activations of
both networks (``4 H`` floats) and ``sigmoid(v) dW`` (N_w floats): with H = 64, N_w = 11 this is
1068 bytes.

Gradients. When no twin weight needs a gradient (a frozen twin inside a network, the benchmark)
and grad mode is on, the whole sequence is one :class:`_Sequence` (``torch.autograd.Function``)
whose hand-written backward runs the steps in reverse: per step a few ``mm`` and in-place
``sigmoid_backward`` kernels, no per-step autograd nodes, slices or scatters. It runs the two
networks as separate matmuls (:func:`_dense`), so that on a CPU each hidden layer is one fused
oneDNN matmul + bias + sigmoid and the diffusion's output layer computes only its ``N_w``
columns: measured against the ``bmm`` chain above (2026-12-07, Intel Xeon 2.8 GHz, interleaved
rounds, identical gradients to 1e-7), the 200 x 128 x 40 twin layer's forward + backward 1.16x
with one thread and 1.06x with two, the MNIST network's training step 1.17x and 1.05x (two
threads scale poorly on that machine whatever the kernel). Where MKL runs generic code (an AMD
CPU, :func:`_mkl_tuned_here`) the output layers and the backward's products are oneDNN matmuls
too: on a 2-core AMD EPYC (Zen 3, AVX2) the MNIST training step 1.17x with one thread and 1.10x
with two, the twin layer 1.09x and 1.05x (medians of 12-20 interleaved rounds, 2026-12-07);
on Intel CPUs nothing changes. With grad mode off (evaluation, validation, transfer, the twin
served as a rig, the GAN's samples) a frozen twin runs the same forward loop
(:func:`_frozen_steps`) and keeps nothing: on the AMD EPYC (2026-12-07, session 12, interleaved
rounds) the 200 x 128 x 40 layer without gradients 1.44x faster than the ``bmm`` chain with one
thread and 1.33x with two (medians of 10), the MNIST network's ``predict`` on 2,048 images 1.51x
and 1.39x (medians of 6), the same outputs to 4e-7. Otherwise (fitting: weight
gradients; ``compile=True``) each step is :func:`_step` under ordinary autograd. The
step frees and allocates ~10 MB blocks by the hundred; the ``nado`` command (not this library)
keeps glibc from returning them to the kernel (:mod:`nado.cli._malloc`).

Precision. Inside :func:`nado.twin.precision.matmul_precision` (``[train] precision``), the
frozen-twin sequence with gradients runs its MLP matmuls and keeps its saved activations in that
dtype (bfloat16: half the saved bytes), while ``y``, ``M``, the noise and the gradient w.r.t. ``y``
stay in float32; without gradients it runs in ``y``'s dtype (the scope stated in
:mod:`nado.twin.precision`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._packed import Diffusion, Packed
from .precision import cpu_vendor, current_matmul_dtype


def _layout(p: Packed, n_in: int, n_aux: int):
    n, nd = p.n_obs, p.n_delay
    d = n * (nd + 1)
    k = n_in + 1 + d
    return n, nd, d, k, k + n_aux


def _y_rows(n: int, nd: int, device: torch.device) -> Tensor:
    """Index into the embed order ``(z(t), z(t-1), ...)`` for each stored column (reversed
    blocks: ``z(t-nd) ... z(t)``), created on ``device``."""
    blocks = [torch.arange(j * n, (j + 1) * n, device=device) for j in range(nd, -1, -1)]
    return torch.cat(blocks)


def _weights(p: Packed, n_in: int, with_g: bool):
    """Per-call weight arrangement (differentiable w.r.t. the packed weights)."""
    n_aux = p.tau_inv.shape[0] if with_g else 0
    n, nd, d, k, c = _layout(p, n_in, n_aux)
    rows = _y_rows(n, nd, p.f_first[0].device)
    h = 1.0                                         # substeps == 1

    def first(fst):
        wy, wu, b = fst
        return torch.cat([wu, b.unsqueeze(0), wy[rows]], 0)          # (K, H)

    nets = [(p.f_first, p.f_hidden)] + ([(p.g_first, p.g_hidden)] if with_g else [])
    w1 = torch.stack([first(fst) for fst, _ in nets])                 # (G, K, H)
    hidden = [(torch.stack([hid[i][0] for _, hid in nets]),
               torch.stack([hid[i][1] for _, hid in nets]).unsqueeze(1))
              for i in range(len(p.f_hidden))]                        # (G, H, H), (G, 1, H)

    # drift output -> columns of Y': z(t) gets h f_z, delay j gets f_j (learned residual)
    wo, bo = p.f_out
    hdim = wo.shape[0]
    zc = n_in + 1 + nd * n                                            # first column of z(t)
    parts_w, parts_b = [], []
    parts_w.append(wo.new_zeros(hdim, n_in + 1))                     # u, constant
    parts_b.append(bo.new_zeros(n_in + 1))
    for j in range(nd, 0, -1):                                        # stored z(t-j) blocks
        if p.learned_delays:
            parts_w.append(wo[:, j * n:(j + 1) * n])
            parts_b.append(bo[j * n:(j + 1) * n])
        else:
            parts_w.append(wo.new_zeros(hdim, n))
            parts_b.append(bo.new_zeros(n))
    parts_w.append(wo[:, :n] * h)
    parts_b.append(bo[:n] * h)
    if n_aux:
        parts_w.append(wo.new_zeros(hdim, n_aux))
        parts_b.append(bo.new_zeros(n_aux))
    wf = torch.cat(parts_w, 1)                                        # (H, C)
    bf = torch.cat(parts_b)                                           # (C,)

    # linear part M (C, C): Y' = Y @ M + ...; row = source column, column = destination
    m = wo.new_zeros(c, c)
    m[n_in] = bf                                                      # drift output bias
    m[n_in, n_in] = 1.0                                               # the constant column
    eye = torch.eye(n, dtype=wo.dtype, device=wo.device)
    m[zc:zc + n, zc:zc + n] = eye                                     # z(t) + h f
    for j in range(1, nd + 1):                                        # z(t-j) <- z(t-j+1)
        s = n_in + 1 + (nd - j) * n
        m[s + n:s + 2 * n, s:s + n] = eye
    if n_aux:
        m[k:c, zc:zc + n] = p.a_mat_t * h                             # z += h A a
        m[k:c, k:c] = torch.diag(1.0 - h * p.tau_inv)                 # a -= h a / tau
    # output layers as one (G, H, C) batch: drift -> Y' columns, diffusion -> N_w raw heads
    if with_g:
        wg, bg = p.g_out
        nw = wg.shape[1]
        wo2 = torch.stack([wf, torch.cat([wg, wg.new_zeros(hdim, c - nw)], 1)])
        bo2 = torch.stack([torch.zeros_like(bf), torch.cat([bg, bg.new_zeros(c - nw)])]).unsqueeze(1)
    else:
        wo2, bo2 = wf.unsqueeze(0), None
    return w1, hidden, wo2, bo2, m, (n, nd, d, k, c, zc)


def integrate_fast(p: Packed, u: Tensor, y0: Tensor, dw: Tensor | None, *, compile: bool = False) -> Tensor:
    """Euler / Euler-Maruyama with one step per sample; same contract as
    :func:`nado.twin.integrate.integrate` (u (B, T, n_in), y0 (B, D), dw (T, B, N_w) or None)
    -> z (B, T, n_obs). ``compile``: the step through ``torch.compile``."""
    with_g = dw is not None and p.g_out is not None
    bsz, steps, n_in = u.shape
    w1, hidden, wo, bo, m, (n, nd, d, k, c, zc) = _weights(p, n_in, with_g)
    rows = _y_rows(n, nd, y0.device)
    parts = [u[:, 0], y0.new_ones(bsz, 1), y0[:, rows]]
    if with_g:
        parts.append(y0.new_zeros(bsz, c - k))
    y = torch.cat(parts, 1)                                           # (B, C)
    nw = c - zc if with_g else 0
    weights = [w1, wo, m] + ([bo] if bo is not None else []) + [t for pair in hidden for t in pair]
    if not compile and not any(t.requires_grad for t in weights):
        # frozen twin (networks, bench, evaluation): the whole sequence in one loop; with grad
        # mode on, inside an autograd Function with a hand-written backward; the matmul dtype of
        # nado.twin.precision applies to that gradient path only (no-grad runs in y's dtype)
        meta = (k, nw, n_in, zc, n)
        flat = [t for pair in hidden for t in pair]
        if torch.is_grad_enabled():
            return _Sequence.apply(u, y, dw if with_g else None, w1, wo, bo, m,
                                   meta + (current_matmul_dtype(),), *flat)
        return _frozen_steps(u, y, dw if with_g else None, w1, wo, bo, m, meta + (None,), flat,
                             keep=False)[0]
    step = _compiled() if compile else _step
    out = []
    for t in range(steps):
        y = step(y, u[:, t + 1] if t + 1 < steps else None, dw[t] if with_g else None,
                 w1, hidden, wo, bo, m, k, nw, n_in)
        out.append(y[:, zc:zc + n])
    return torch.stack(out, 1)


class _Sequence(torch.autograd.Function):
    """All steps of :func:`integrate_fast` for a frozen twin (no weight needs a gradient), with a
    hand-written backward: the forward keeps every step's hidden activations (one ``(B, H)`` per
    network and layer) and ``sigmoid(v) dW`` ``(B, N_w)`` (the only saved tensors); the backward
    runs the steps in reverse with a few large kernels per step and no per-step autograd nodes.
    Gradients: ``u`` (steps >= 1) and the initial packed state ``y``. ``meta`` ends with the
    matmul dtype (None: ``y``'s), see the module docstring.

    Unlike :func:`_step`, the two networks run as separate matmuls (:func:`_dense`), so that on
    a CPU each hidden layer is one fused oneDNN kernel and the diffusion's output layer only
    computes its ``N_w`` columns."""

    @staticmethod
    def forward(ctx, u, y, dw, w1, wo, bo, m, meta, *hidden):
        z, w1s, layers, outs, acts, d = _frozen_steps(u, y, dw, w1, wo, bo, m, meta, hidden, keep=True)
        ctx.meta, ctx.n_layers, ctx.steps, ctx.groups = meta, len(layers), u.shape[1], w1.shape[0]
        ctx.save_for_backward(m, *w1s, *[w for layer in layers for w, _ in layer], *outs,
                              *acts, *d)
        return z

    @staticmethod
    def backward(ctx, gz):
        k, nw, n_in, zc, n, _ = ctx.meta
        saved = ctx.saved_tensors
        nl, steps, groups = ctx.n_layers, ctx.steps, ctx.groups
        m, rest = saved[0], list(saved[1:])
        w1s, rest = rest[:groups], rest[groups:]                       # the forward's weights
        wts = [rest[i * groups:(i + 1) * groups] for i in range(nl)]
        outs, rest = rest[nl * groups:nl * groups + groups], rest[nl * groups + groups:]
        per_step = (nl + 1) * groups
        acts, d = rest[:per_step * steps], rest[per_step * steps:] or None
        bsz, mdt = gz.shape[0], acts[0].dtype              # the matmul dtype of the forward
        c = m.shape[0]
        mt = m.t().contiguous()             # contiguous: a transposed view is ~2x slower here
        onednn = _onednn(gz.device, mdt, sigmoid=False)

        def lin(w):         # x @ w is _dense(x, w^T): w^T contiguous where oneDNN multiplies
            return w.t().contiguous() if onednn else w.t()   # else a view: MKL gets w itself

        outs, w1s, wts = [lin(w) for w in outs], [lin(w) for w in w1s], [[lin(w) for w in ws] for ws in wts]
        g = gz.new_zeros(bsz, c)
        gu = gz.new_zeros(bsz, steps, n_in)
        for t in range(steps - 1, -1, -1):
            a = acts[t * per_step:(t + 1) * per_step]       # layer-major: a[i * groups + net]
            g[:, zc:zc + n] += gz[:, t]
            if t + 1 < steps:
                gu[:, t + 1] = g[:, :n_in]
                g[:, :n_in] = 0.0
            g_new = torch.mm(g, mt)
            go = [g.to(mdt)] + ([(g[:, c - nw:] * d[t]).to(mdt)] if d is not None else [])
            gh = [_dense(go_q, w, None) for go_q, w in zip(go, outs)]
            for i in range(nl - 1, -1, -1):
                gh = [_dense(_sigmoid_backward_(gh[q], a[(i + 1) * groups + q]), wts[i][q], None)
                      for q in range(groups)]
            for q in range(groups):
                g_new[:, :k] += _dense(_sigmoid_backward_(gh[q], a[q]), w1s[q], None)
            g = g_new
        return (gu, g, None, None, None, None, None, None) + (None,) * (2 * nl)


def _frozen_steps(u: Tensor, y: Tensor, dw: Tensor | None, w1: Tensor, wo: Tensor,
                  bo: Tensor | None, m: Tensor, meta: tuple, hidden, keep: bool):
    """The frozen twin's forward, all steps (:class:`_Sequence`'s forward, and the whole of a
    frozen twin's integration when grad mode is off: evaluation, validation, transfer). Returns
    ``(z (B, T, n_obs), w1s, layers, outs, acts, d)``: the trajectories, the weights as the
    kernels take them (per network, in the matmul dtype, ``(out, in)``) and, when ``keep``, what
    the backward needs: each step's hidden activations (one ``(B, H)`` per network and layer,
    layer-major) and ``sigmoid(v) dW`` ``(B, N_w)``; empty lists otherwise."""
    k, nw, n_in, zc, n, mdt = meta
    steps = u.shape[1]
    groups, c = w1.shape[0], y.shape[1]
    mdt = mdt or y.dtype
    # per network, in the matmul dtype, as (out, in) (F.linear's layout); the backward
    # multiplies by the same tensors from the other side
    w1s = [w1[g].t().to(mdt).contiguous() for g in range(groups)]                # (H, K)
    layers = [[(hidden[i][g].t().to(mdt).contiguous(), hidden[i + 1][g, 0].to(mdt))
               for g in range(groups)] for i in range(0, len(hidden), 2)]          # (H, H)
    outs = [wo[0].t().to(mdt).contiguous()]                                        # (C, H)
    if groups > 1:                                                 # diffusion heads only
        outs.append(wo[1][:, :nw].t().to(mdt).contiguous())                        # (N_w, H)
        b_diff = bo[1, 0, :nw].to(mdt)
    acts = []                 # per step and layer, one (B, H) per network: fresh tensors,
    d = []                    # not one huge buffer (first-touch page faults cost more)
    z = []
    for t in range(steps):
        x = y[:, :k].to(mdt)
        hid = [_dense(x, w, None, sigmoid=True) for w in w1s]
        if keep:
            acts += hid
        for layer in layers:
            hid = [_dense(h, w, b, sigmoid=True) for h, (w, b) in zip(hid, layer)]
            if keep:
                acts += hid
        y = torch.addmm(_dense(hid[0], outs[0], None).to(y.dtype), y, m)
        if dw is not None:
            v = _dense(hid[1], outs[1], b_diff).to(y.dtype)
            if keep:
                d.append(torch.sigmoid(v).mul_(dw[t]))
            y[:, c - nw:] += torch.nn.functional.softplus(v).mul_(dw[t])
        if t + 1 < steps:
            y[:, :n_in] = u[:, t + 1]
        z.append(y[:, zc:zc + n])
    return torch.stack(z, 1), w1s, layers, outs, acts, d


def _step(y: Tensor, u_next: Tensor | None, dw_t: Tensor | None, w1: Tensor, hidden: list,
          wo: Tensor, bo: Tensor | None, m: Tensor, k: int, nw: int, n_in: int) -> Tensor:
    """One Euler(-Maruyama) step in the packed layout (see the module docstring)."""
    x = y[:, :k].unsqueeze(0).expand(w1.shape[0], y.shape[0], k)
    hid = torch.bmm(x, w1).sigmoid_()
    for w, b in hidden:
        hid = torch.baddbmm(b, hid, w).sigmoid_()
    o = torch.bmm(hid, wo) if bo is None else torch.baddbmm(bo, hid, wo)  # (G, B, C)
    y = torch.addmm(o[0], y, m)
    if dw_t is not None:
        y[:, y.shape[1] - nw:] += Diffusion.apply(o[1, :, :nw], dw_t)
    if u_next is not None:
        y[:, :n_in] = u_next
    return y


def _sigmoid_backward_(grad: Tensor, out: Tensor) -> Tensor:
    """``grad * out * (1 - out)`` written into ``grad`` (one fused pass, no allocation)."""
    return torch.ops.aten.sigmoid_backward.grad_input(grad, out, grad_input=grad)


def _fused_cpu_dtypes() -> tuple:
    """The dtypes in which :func:`_dense`'s fused CPU kernel runs here: each candidate (float32;
    bfloat16 where oneDNN says this CPU runs it) is tried once on a small layer and kept only if
    it gives ``sigmoid(x @ w.T + b)``; none without oneDNN (another torch build or CPU) or if the
    kernel fails, so an unsupported machine takes the plain kernels instead of an error."""
    mkldnn = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_linear_pointwise")):
        return ()
    candidates = [torch.float32]
    if hasattr(mkldnn, "_is_mkldnn_bf16_supported") and mkldnn._is_mkldnn_bf16_supported():
        candidates.append(torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(shape, generator=gen) for shape in ((8, 5), (3, 5), (3,)))
    want = torch.sigmoid(x @ w.t() + b)
    ok = []
    for dtype in candidates:
        try:
            got = mkldnn._linear_pointwise(x.to(dtype), w.to(dtype), b.to(dtype), "sigmoid", [], "")
        except RuntimeError:
            continue
        if torch.allclose(got.float(), want, atol=2e-2 if dtype == torch.bfloat16 else 1e-5):
            ok.append(dtype)
    return tuple(ok)


_FUSED_DTYPES = _fused_cpu_dtypes()


def _mkl_tuned_here() -> bool:
    """Whether torch's CPU matmul (``mm``/``addmm``: MKL) runs tuned kernels on this CPU. MKL picks
    its kernels by the CPU's vendor: on Intel CPUs the tuned ones, elsewhere (AMD) generic code.
    Measured on a 2-core AMD EPYC (Zen 3, AVX2; 2026-12-07, one thread, 25,600 rows, float32):
    ``mm`` ran the twin's skinny matmuls at 11-36 GFLOP/s (64 -> 8 of the backward 2.2 ms, 64 ->
    11 of the diffusion head 3.4 ms) where oneDNN's matmul ran them at 42-69 (0.44 ms, 0.85 ms);
    with MKL's vendor check overridden (``LD_PRELOAD`` of ``mkl_serv_intel_cpu_true`` returning
    1, for the measurement only) ``mm`` ran them at 55-96, faster than oneDNN. True (``mm`` kept)
    on Intel or an unknown vendor, the case the plain kernels were measured on, and where torch
    has no MKL (``mm`` is then another BLAS, not measured here)."""
    vendor = cpu_vendor()
    return not torch.backends.mkl.is_available() or vendor in (None, "GenuineIntel")


_MKL_TUNED = _mkl_tuned_here()


def _onednn(device: torch.device, dtype: torch.dtype, sigmoid: bool) -> bool:
    """Whether :func:`_dense` runs a layer (with or without its sigmoid) as a oneDNN kernel."""
    return (sigmoid or not _MKL_TUNED) and device.type == "cpu" and dtype in _FUSED_DTYPES


def _dense(x: Tensor, w: Tensor, b: Tensor | None, sigmoid: bool = False) -> Tensor:
    """``x @ w.T + b`` (x (B, in), w (out, in), b (out,) or None), then ``sigmoid`` if asked.

    One path on every device; the kernel is chosen by device: on a CPU with oneDNN a hidden layer
    (``sigmoid=True``, in a dtype of :func:`_fused_cpu_dtypes`) is one fused matmul + bias + sigmoid
    (``torch.ops.mkldnn._linear_pointwise``, the kernel ``torch.compile`` fuses into on CPUs): the
    activations are written once, while still in cache, instead of a matmul, a bias broadcast
    and a sigmoid pass over 6.5 MB each. Measured (2026-12-07, Intel Xeon 2.8 GHz, one thread,
    25,600 x 64 @ 64 x 64): 2.9 ms against 3.7 ms for ``addmm`` + ``sigmoid_``; for the output
    layers (no sigmoid) MKL's ``mm`` is as fast or faster there (64 -> 18: 1.0 ms against 1.4 ms),
    so on such a CPU they take the plain path; where MKL runs generic code
    (:func:`_mkl_tuned_here`: AMD) they are oneDNN matmuls too. Elsewhere (CUDA, float64, a torch
    without oneDNN): ``addmm``/``mm`` + in-place sigmoid.
    """
    if _onednn(x.device, x.dtype, sigmoid):
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "sigmoid" if sigmoid else "none", [], "")
    out = torch.mm(x, w.t()) if b is None else torch.addmm(b, x, w.t())
    return out.sigmoid_() if sigmoid else out


_COMPILED: dict = {}


def _compiled():
    """``torch.compile`` of :func:`_step`, built once per process (opt-in: ``compile=True``)."""
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(_step, dynamic=False)
    return _COMPILED["step"]
