"""A twin's weights arranged for the integrator's step, and the diffusion term's autograd function.

Shared by the general step (:mod:`nado.twin.integrate`) and the packed Euler step
(:mod:`nado.twin._fast`); shapes as in :mod:`nado.twin.integrate`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F


class Packed(NamedTuple):
    """A twin's weights arranged for the step (built once per call; differentiable)."""

    n_obs: int
    n_delay: int
    width: int
    learned_delays: bool    # f also outputs residuals of the delay entries (paper's full f)
    f_first: tuple          # (W_y^T (D, H), W_u^T (n_in, H), b (H,)): first layer of f
    f_hidden: list          # [(W^T (H, H), b)]
    f_out: tuple            # (W^T (H, n_obs), b)
    g_first: tuple | None   # like f_first, or None for an ODE or noise=False
    g_hidden: list
    g_out: tuple | None     # (W^T (H, N_w), b)
    a_mat_t: Tensor | None  # (N_a, n_obs): A^T
    tau_inv: Tensor | None  # (N_a,)


class Diffusion(torch.autograd.Function):
    """``softplus(v) * dw`` that saves one tensor, ``sigmoid(v) * dw``, for the backward pass
    (autograd would save both ``v`` and ``dw``). ``dw`` gets no gradient."""

    @staticmethod
    def forward(ctx, v: Tensor, dw: Tensor) -> Tensor:
        if ctx.needs_input_grad[1]:
            raise ValueError("Brownian increments dw must not require grad")
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(torch.sigmoid(v) * dw)
        return F.softplus(v) * dw

    @staticmethod
    def backward(ctx, grad: Tensor):
        (d,) = ctx.saved_tensors
        return grad * d, None
