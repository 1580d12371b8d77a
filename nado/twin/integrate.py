"""The one batched fixed-step integrator of neural-ODE and neural-SDE twins (training and simulation).

Everything here works in normalised units: inputs ``u`` in [-1, 1] over the active range,
observables ``z = (x - mean) / std``. Shapes: ``B`` trajectories, ``T`` input samples,
``D = n_obs * (n_delay + 1)`` embedded state, ``N_a`` auxiliary variables, ``N_w = n_obs + N_a``
Wiener processes.

State. ``y = (z(t), z(t-1), ..., z(t-n_delay))`` (current observable first) and, for an SDE,
``a`` (B, N_a) with ``a(t0) = 0``. Within one input sample the input and the delayed entries are
held fixed and only ``z(t)`` (and ``a``) are integrated; at the end of the sample the delays are
shifted: ``z(t-k) <- z(t-k+1)`` exactly (``delays="shift"``), or plus a learned residual
``r_k(y, u)`` evaluated at the start of the sample (``delays="learned"``, the paper's choice of
learning ``f`` over all of ``y``: with one Euler step per sample, ``f_k = z(t-k+1) - z(t-k) + r_k``
is the paper's update, initialised at the exact shift; the delay entries then act as latent
memory, not only as past outputs). Either way this equals one Euler step of size 1 of the paper's
system, which is how :mod:`nado.twin.reference` writes the same SDE for ``torchsde``.

Equations, eq. (3) of the paper, with ``f`` the drift MLP and ``g`` the diffusion MLP, both fed
``(y, u)``::

    dz = (f(y, u) + A a) dt + g_1(y, u) dW_1          (n_obs)
    da = -a / tau dt        + g_a(y, u) dW_a          (N_a)

Diagonal noise: one Wiener process per noisy coordinate (``g`` gives ``N_w`` non-negative entries
through a softplus). Schemes: Euler / RK4 for the ODE; Euler-Maruyama (Ito, default) and
stochastic Heun (Stratonovich, as ``torchsde``'s ``heun``) for the SDE. ``dW`` is pre-sampled as
one tensor ``(T * substeps, B, N_w)`` with variance ``h``, so the same increments can be handed
to ``torchsde`` in tests and benchmarks.

Speed: ``tanh`` is computed as ``2 * sigmoid(2 z) - 1`` (several times faster on CPU here), with
the affine parts folded into the weights (:func:`_fold`), so a hidden layer is one ``addmm`` and
one ``sigmoid`` and backprop stores one sigmoid output per unit and step; the
input part of the first layer is one matmul over all ``T`` steps before the loop.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ._fast import integrate_fast
from ._packed import Diffusion, Packed


def _fold(layers) -> list[tuple[Tensor, Tensor]]:
    """Fold tanh = 2 sigmoid(2 z) - 1 into the weights, so each hidden layer is addmm + sigmoid.

    With ``sig_l = sigmoid(2 z_l)`` and ``tanh(z_l) = 2 sig_l - 1``: the first layer gets
    ``(2 W, 2 b)``, hidden layers ``(4 W, 2 (b - W 1))``, the output layer ``(2 W, b - W 1)``.
    Returns transposed weights ``(in, out)`` and biases, differentiable w.r.t. the originals.
    """
    out = []
    last = len(layers) - 1
    for i, lin in enumerate(layers):
        w, b = lin.weight, lin.bias
        if i == 0:
            w, b = 2 * w, 2 * b
        elif i < last:
            w, b = 4 * w, 2 * (b - w.sum(1))
        else:
            w, b = 2 * w, b - w.sum(1)
        out.append((w.t(), b))
    return out


def pack(f_layers, g_layers, a_mat, tau, n_obs: int, n_delay: int, with_g: bool,
         learned_delays: bool = False) -> Packed:
    """Arrange ``nn.Linear`` lists ``f_layers``/``g_layers`` (first layer takes ``cat(y, u)``)."""
    d = n_obs * (n_delay + 1)
    first = lambda w, b: (w[:d], w[d:], b)  # noqa: E731
    ff = _fold(f_layers)
    gg = _fold(g_layers) if with_g else None
    return Packed(
        n_obs=n_obs, n_delay=n_delay, width=f_layers[0].out_features,
        learned_delays=bool(learned_delays and n_delay > 0), f_first=first(*ff[0]), f_hidden=ff[1:-1], f_out=ff[-1],
        g_first=first(*gg[0]) if with_g else None, g_hidden=gg[1:-1] if with_g else [],
        g_out=gg[-1] if with_g else None,
        a_mat_t=a_mat.t() if (with_g and a_mat is not None) else None,
        tau_inv=(1.0 / tau) if (with_g and tau is not None) else None,
    )


def input_preactivation(p: Packed, u: Tensor) -> list[tuple[Tensor, Tensor | None]]:
    """First-layer input parts of ``f`` and ``g`` for all steps in one matmul each.

    u (B, T, n_in) -> T pairs ``(pre_f (B, H), pre_g (B, H) or None)``.
    """
    flat = u.transpose(0, 1).reshape(-1, u.shape[-1])
    part = lambda first: torch.addmm(first[2], flat, first[1]).view(  # noqa: E731
        u.shape[1], u.shape[0], -1).unbind(0)      # unbind: one backward op, not T selects
    pf = part(p.f_first)
    pg = part(p.g_first) if p.g_first is not None else [None] * len(pf)
    return list(zip(pf, pg))


def heads(p: Packed, y: Tensor, pre: tuple) -> tuple[Tensor, Tensor | None]:
    """Drift ``f(y, u)`` (B, n_obs, or D with learned delays: the current observable's drift,
    then the delay residuals) and, if packed, the raw diffusion head ``v`` (B, N_w):
    ``g = softplus(v)`` (see :func:`diffusion`)."""
    hf = torch.sigmoid(torch.addmm(pre[0], y, p.f_first[0]))    # weights folded: see _fold
    for w, b in p.f_hidden:
        hf = torch.sigmoid(torch.addmm(b, hf, w))
    f = torch.addmm(p.f_out[1], hf, p.f_out[0])
    if p.g_out is None:
        return f, None
    hg = torch.sigmoid(torch.addmm(pre[1], y, p.g_first[0]))
    for w, b in p.g_hidden:
        hg = torch.sigmoid(torch.addmm(b, hg, w))
    return f, torch.addmm(p.g_out[1], hg, p.g_out[0])


def diffusion(v: Tensor) -> Tensor:
    """The diffusion ``g = softplus(v)`` (>= 0) from the raw head output ``v``."""
    return F.softplus(v)


def drift_z(p: Packed, f: Tensor, a: Tensor | None) -> Tensor:
    """Drift of the current observable: ``f + A a``."""
    return f if (a is None or p.a_mat_t is None) else f + a @ p.a_mat_t


def drift_a(p: Packed, a: Tensor) -> Tensor:
    """Drift of the auxiliary variables: ``-a / tau``."""
    return -a * p.tau_inv


def shift(p: Packed, y: Tensor, z_new: Tensor, r: Tensor | None = None) -> Tensor:
    """New embedded state: ``z_new`` first, older entries moved one delay back (plus the learned
    residual ``r`` when ``p.learned_delays``)."""
    if p.n_delay == 0:
        return z_new
    old = y[:, :p.n_obs * p.n_delay]
    return torch.cat([z_new, old if r is None else old + r], 1)


def _ode_substep(p: Packed, y: Tensor, z: Tensor, pre: tuple, h: float, method: str):
    """One ODE step of size ``h`` of the current observable ``z`` with delays and input held.

    Returns ``(z_new, r)``: ``r`` (B, n_obs * n_delay) is the learned delay residual at the
    start of the step (None unless ``p.learned_delays``)."""
    n = p.n_obs
    r = None

    def rate(zz: Tensor) -> Tensor:
        nonlocal r
        yy = zz if p.n_delay == 0 else torch.cat([zz, y[:, n:]], 1)
        f = heads(p, yy, pre)[0]
        if p.learned_delays and r is None:
            r = f[:, n:]
        return f[:, :n] if p.learned_delays else f
    if method == "euler":
        return z + rate(z) * h, r
    k1 = rate(z)
    k2 = rate(z + k1 * (h / 2))
    k3 = rate(z + k2 * (h / 2))
    k4 = rate(z + k3 * h)
    return z + (k1 + 2 * k2 + 2 * k3 + k4) * (h / 6), r


def _sde_substep(p: Packed, y: Tensor, z: Tensor, a: Tensor, pre: tuple, dw: Tensor, h: float,
                 method: str):
    """One SDE step of size ``h`` (Euler-Maruyama or stochastic Heun) of ``(z, a)``.

    Returns ``(z_new, a_new, r)`` with ``r`` as in :func:`_ode_substep`."""
    n = p.n_obs
    yy = z if p.n_delay == 0 else torch.cat([z, y[:, n:]], 1)
    f, v = heads(p, yy, pre)
    r = f[:, n:] if p.learned_delays else None
    fz, fa = drift_z(p, f[:, :n], a), drift_a(p, a)
    gdw = Diffusion.apply(v, dw)
    gz, ga = gdw[:, :n], gdw[:, n:]
    z1 = z + fz * h + gz
    a1 = a + fa * h + ga
    if method == "euler":
        return z1, a1, r
    yy1 = z1 if p.n_delay == 0 else torch.cat([z1, y[:, n:]], 1)
    f1, v1 = heads(p, yy1, pre)
    fz1, fa1 = drift_z(p, f1[:, :n], a1), drift_a(p, a1)
    gdw1 = Diffusion.apply(v1, dw)
    z2 = z + ((fz + fz1) * h + gz + gdw1[:, :n]) * 0.5
    a2 = a + ((fa + fa1) * h + ga + gdw1[:, n:]) * 0.5
    return z2, a2, r


_COMPILED: dict = {}    # torch.compile of the general steps, built on first use


def _compiled_steps():
    if not _COMPILED:
        _COMPILED["sde"] = torch.compile(_sde_substep)
        _COMPILED["ode"] = torch.compile(_ode_substep)
    return _COMPILED["sde"], _COMPILED["ode"]


def integrate(p: Packed, u: Tensor, y0: Tensor, *, method: str, substeps: int = 1,
              dw: Tensor | None = None, fast: bool = True, compile: bool = False) -> Tensor:
    """Integrate a twin over the inputs ``u``; returns the observable after each sample.

    u (B, T, n_in) normalised inputs; y0 (B, D) normalised embedded initial state;
    dw (T * substeps, B, N_w) Brownian increments (variance ``1 / substeps``) or None for the
    deterministic path (ODE, or SDE with noise off). Returns z (B, T, n_obs), normalised.

    ``fast``: Euler with one step per sample (and Heun without noise, the same step) takes the
    packed step of :mod:`nado.twin._fast`; False forces the general path (the same numbers to
    float rounding). ``compile``: run each step through ``torch.compile`` (opt-in). It fuses
    the step's elementwise work: for the packed step at most ~10% faster than eager, so eager
    stays the default; for the general step 2x faster forward+backward in one run on the shared
    2-core machine, no gain in another. The first call compiles (20 s to over a minute) and each
    new batch shape may recompile; the unrolled loop itself is never compiled (far slower).
    ``nado bench --only twin`` reports both paths.
    """
    if fast and method in ("euler", "heun") and substeps == 1 \
            and (method == "euler" or dw is None or p.g_out is None):
        return integrate_fast(p, u, y0, dw, compile=compile)
    n, h = p.n_obs, 1.0 / substeps
    steps = u.shape[1]
    pre = input_preactivation(p, u)
    y, out = y0, []
    sde = dw is not None and p.g_out is not None
    a = y0.new_zeros(y0.shape[0], p.tau_inv.shape[0]) if sde else None
    sde_step, ode_step = _compiled_steps() if compile else (_sde_substep, _ode_substep)
    for t in range(steps):
        z, r = y[:, :n], None
        for k in range(substeps):
            if sde:
                z, a, rk = sde_step(p, y, z, a, pre[t], dw[t * substeps + k], h, method)
            else:
                z, rk = ode_step(p, y, z, pre[t], h, "euler" if method == "heun" else method)
            r = rk if k == 0 else r
        y = shift(p, y, z, r)
        out.append(z)
    return torch.stack(out, 1)
