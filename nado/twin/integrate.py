"""The one batched fixed-step integrator of neural-ODE and neural-SDE twins (training and simulation).

Everything here works in normalised units: inputs ``u`` in [-1, 1] over the active range,
observables ``z = (x - mean) / std``. Shapes: ``B`` trajectories, ``T`` input samples,
``D = n_obs * (n_delay + 1)`` embedded state, ``N_a`` auxiliary variables, ``N_w = n_obs + N_a``
Wiener processes.

State. ``y = (z(t), z(t-1), ..., z(t-n_delay))`` (current observable first) and, for an SDE,
``a`` (B, N_a) with ``a(t0) = 0``. Within one input sample the input and the delayed entries are
held fixed and only ``z(t)`` (and ``a``) are integrated; at the end of the sample the delays are
shifted *exactly*: ``z(t-k) <- z(t-k+1)``. (The paper learns ``f`` over all of ``y``; the shift is
what the embedding means, costs nothing, and equals one Euler step of size 1 of the paper's system
with ``f_k = (z(t-k+1) - z(t-k)) / dt``: that is how :mod:`nado.twin.reference` writes the same
SDE for ``torchsde``.)

Equations, eq. (3) of the paper, with ``f`` the drift MLP and ``g`` the diffusion MLP, both fed
``(y, u)``::

    dz = (f(y, u) + A a) dt + g_1(y, u) dW_1          (n_obs)
    da = -a / tau dt        + g_a(y, u) dW_a          (N_a)

Diagonal noise: one Wiener process per noisy coordinate (``g`` gives ``N_w`` non-negative entries
through a softplus). Schemes: Euler / RK4 for the ODE; Euler-Maruyama (Ito, default) and
stochastic Heun (Stratonovich, as ``torchsde``'s ``heun``) for the SDE. ``dW`` is pre-sampled as
one tensor ``(T * substeps, B, N_w)`` with variance ``h``, so the same increments can be handed
to ``torchsde`` in tests and benchmarks.

Speed: ``tanh`` is computed as ``2 * sigmoid(2 z) - 1`` (several times faster on CPU here); the
input part of the first layer is one matmul over all ``T`` steps before the loop; ``f`` and ``g``
share that first matmul (their first-layer weights are concatenated).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F


def act(z: Tensor) -> Tensor:
    """tanh(z), computed as 2 * sigmoid(2 z) - 1 (same function, much faster on CPU)."""
    return torch.sigmoid(z * 2.0) * 2.0 - 1.0


class Packed(NamedTuple):
    """A twin's weights arranged for the step (built once per call; differentiable)."""

    n_obs: int
    n_delay: int
    width: int
    w0y: Tensor            # (D, H) or (D, 2H): first layer, state part, [f | g] columns
    w0u: Tensor            # (n_in, H or 2H): first layer, input part
    b0: Tensor             # (H or 2H,)
    f_hidden: list         # [(W^T (H, H), b)]
    f_out: tuple           # (W^T (H, n_obs), b)
    g_hidden: list         # [] for an ODE or noise=False
    g_out: tuple | None    # (W^T (H, N_w), b) or None
    a_mat_t: Tensor | None  # (N_a, n_obs): A^T
    tau_inv: Tensor | None  # (N_a,)


def pack(f_layers, g_layers, a_mat, tau, n_obs: int, n_delay: int, with_g: bool) -> Packed:
    """Arrange ``nn.Linear`` lists ``f_layers``/``g_layers`` (first layer takes ``cat(y, u)``)."""
    d = n_obs * (n_delay + 1)
    f0, g0 = f_layers[0], (g_layers[0] if with_g else None)
    w0 = f0.weight if g0 is None else torch.cat([f0.weight, g0.weight], 0)   # (Hc, D + n_in)
    b0 = f0.bias if g0 is None else torch.cat([f0.bias, g0.bias], 0)
    hidden = lambda layers: [(lin.weight.t(), lin.bias) for lin in layers[1:-1]]  # noqa: E731
    return Packed(
        n_obs=n_obs, n_delay=n_delay, width=f0.out_features,
        w0y=w0[:, :d].t(), w0u=w0[:, d:].t(), b0=b0,
        f_hidden=hidden(f_layers), f_out=(f_layers[-1].weight.t(), f_layers[-1].bias),
        g_hidden=hidden(g_layers) if with_g else [],
        g_out=(g_layers[-1].weight.t(), g_layers[-1].bias) if with_g else None,
        a_mat_t=a_mat.t() if (with_g and a_mat is not None) else None,
        tau_inv=(1.0 / tau) if (with_g and tau is not None) else None,
    )


def input_preactivation(p: Packed, u: Tensor) -> Tensor:
    """First-layer input part for all steps at once: (B, T, n_in) -> (T, B, H or 2H)."""
    return torch.addmm(p.b0, u.transpose(0, 1).reshape(-1, u.shape[-1]), p.w0u).view(
        u.shape[1], u.shape[0], -1)


def heads(p: Packed, y: Tensor, pre: Tensor) -> tuple[Tensor, Tensor | None]:
    """Drift ``f(y, u)`` (B, n_obs) and, if packed, diffusion ``g(y, u)`` (B, N_w) >= 0."""
    h0 = act(torch.addmm(pre, y, p.w0y))
    hf = h0[:, :p.width]
    for w, b in p.f_hidden:
        hf = act(torch.addmm(b, hf, w))
    f = torch.addmm(p.f_out[1], hf, p.f_out[0])
    if p.g_out is None:
        return f, None
    hg = h0[:, p.width:]
    for w, b in p.g_hidden:
        hg = act(torch.addmm(b, hg, w))
    g = F.softplus(torch.addmm(p.g_out[1], hg, p.g_out[0]))
    return f, g


def drift_z(p: Packed, f: Tensor, a: Tensor | None) -> Tensor:
    """Drift of the current observable: ``f + A a``."""
    return f if (a is None or p.a_mat_t is None) else f + a @ p.a_mat_t


def drift_a(p: Packed, a: Tensor) -> Tensor:
    """Drift of the auxiliary variables: ``-a / tau``."""
    return -a * p.tau_inv


def shift(p: Packed, y: Tensor, z_new: Tensor) -> Tensor:
    """New embedded state: ``z_new`` first, older entries moved one delay back."""
    if p.n_delay == 0:
        return z_new
    return torch.cat([z_new, y[:, :p.n_obs * p.n_delay]], 1)


def _ode_substep(p: Packed, y: Tensor, z: Tensor, pre: Tensor, h: float, method: str) -> Tensor:
    """One ODE step of size ``h`` of the current observable ``z`` with delays and input held."""
    def rate(zz: Tensor) -> Tensor:
        yy = zz if p.n_delay == 0 else torch.cat([zz, y[:, p.n_obs:]], 1)
        return heads(p, yy, pre)[0]
    if method == "euler":
        return z + rate(z) * h
    k1 = rate(z)
    k2 = rate(z + k1 * (h / 2))
    k3 = rate(z + k2 * (h / 2))
    k4 = rate(z + k3 * h)
    return z + (k1 + 2 * k2 + 2 * k3 + k4) * (h / 6)


def _sde_substep(p: Packed, y: Tensor, z: Tensor, a: Tensor, pre: Tensor, dw: Tensor, h: float,
                 method: str) -> tuple[Tensor, Tensor]:
    """One SDE step of size ``h`` (Euler-Maruyama or stochastic Heun) of ``(z, a)``."""
    n = p.n_obs
    yy = z if p.n_delay == 0 else torch.cat([z, y[:, n:]], 1)
    f, g = heads(p, yy, pre)
    fz, fa = drift_z(p, f, a), drift_a(p, a)
    gz, ga = g[:, :n] * dw[:, :n], g[:, n:] * dw[:, n:]
    z1 = z + fz * h + gz
    a1 = a + fa * h + ga
    if method == "euler":
        return z1, a1
    yy1 = z1 if p.n_delay == 0 else torch.cat([z1, y[:, n:]], 1)
    f1, g1 = heads(p, yy1, pre)
    fz1, fa1 = drift_z(p, f1, a1), drift_a(p, a1)
    z2 = z + ((fz + fz1) * h + gz + g1[:, :n] * dw[:, :n]) * 0.5
    a2 = a + ((fa + fa1) * h + ga + g1[:, n:] * dw[:, n:]) * 0.5
    return z2, a2


def integrate(p: Packed, u: Tensor, y0: Tensor, *, method: str, substeps: int = 1,
              dw: Tensor | None = None) -> Tensor:
    """Integrate a twin over the inputs ``u``; returns the observable after each sample.

    u (B, T, n_in) normalised inputs; y0 (B, D) normalised embedded initial state;
    dw (T * substeps, B, N_w) Brownian increments (variance ``1 / substeps``) or None for the
    deterministic path (ODE, or SDE with noise off). Returns z (B, T, n_obs), normalised.
    """
    n, h = p.n_obs, 1.0 / substeps
    steps = u.shape[1]
    pre = input_preactivation(p, u)
    y, out = y0, []
    sde = dw is not None and p.g_out is not None
    a = y0.new_zeros(y0.shape[0], p.tau_inv.shape[0]) if sde else None
    for t in range(steps):
        z = y[:, :n]
        for k in range(substeps):
            if sde:
                z, a = _sde_substep(p, y, z, a, pre[t], dw[t * substeps + k], h, method)
            else:
                z = _ode_substep(p, y, z, pre[t], h, "euler" if method == "heun" else method)
        y = shift(p, y, z)
        out.append(z)
    return torch.stack(out, 1)
