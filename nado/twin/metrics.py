"""Distribution metrics between device repeats and twin samples (used for SDE model selection).

Shapes: ``real`` (M, R, T, n) device repeats of M sequences; ``fake`` (M, R', T, n) twin samples
driven by the same inputs (any units, the same for both).
"""
from __future__ import annotations

import torch
from torch import Tensor


def w1_marginal(real: Tensor, fake: Tensor) -> Tensor:
    """Wasserstein-1 distance between the per-(sequence, step, channel) marginals, averaged.

    Uses the quantile form ``W1 = integral |F^-1 - G^-1|``, evaluated on a common grid of
    ``max(R, R')`` quantiles (exact when R == R').
    """
    q = max(real.shape[1], fake.shape[1])
    levels = (torch.arange(q, dtype=real.dtype, device=real.device) + 0.5) / q
    qr = torch.quantile(real.transpose(1, -1), levels.to(real.dtype), dim=-1, interpolation="lower") \
        if real.shape[1] != q else real.sort(1).values.transpose(1, -1).movedim(-1, 0)
    qf = torch.quantile(fake.transpose(1, -1), levels.to(fake.dtype), dim=-1, interpolation="lower") \
        if fake.shape[1] != q else fake.sort(1).values.transpose(1, -1).movedim(-1, 0)
    return (qr - qf).abs().mean()


def std_ratio(real: Tensor, fake: Tensor, eps: float = 1e-12) -> Tensor:
    """Twin/device spread: mean over steps of mean_{m,k} std_twin / mean_{m,k} std_device."""
    sr = real.std(1).mean((0, 2))
    sf = fake.std(1).mean((0, 2))
    return (sf / sr.clamp_min(eps)).mean()


def mean_error(real: Tensor, fake: Tensor) -> Tensor:
    """RMS over sequences, steps and channels of the difference of the means over repeats."""
    return ((real.mean(1) - fake.mean(1)) ** 2).mean().sqrt()
