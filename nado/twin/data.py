"""Dataset -> normalised training tensors for the twin fits (windows, splits, embedded states).

Conventions (see :class:`nado.data.dataset.Dataset`): ``outputs[:, t]`` is the observable after input
``inputs[:, t]``; the observable before the first input is ``initial``. A "full" trajectory is
``cat(initial, outputs)`` (N, T + 1, n_obs); delays reaching before the first sample repeat the
initial value, as in :meth:`nado.twin.Twin.embed`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nado.errors import DatasetError


def split_indices(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split of ``n`` items (at least one of each when n >= 2)."""
    if n < 2:
        raise DatasetError(f"need at least 2 sequences to hold out a validation split, got {n}; "
                           "collect more sequences")
    perm = rng.permutation(n)
    n_val = int(np.clip(round(n * val_fraction), 1, n - 1))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def chunk_long(inputs: np.ndarray, outputs: np.ndarray, initial: np.ndarray, length: int):
    """Cut few long sequences (e.g. ASVI's one 13,000-step run) into chunks of ``length`` steps."""
    n, t = inputs.shape[:2]
    if n >= 20 or t < 2 * length:
        return inputs, outputs, initial
    k = t // length
    ins = inputs[:, :k * length].reshape(n * k, length, -1)
    outs = outputs[:, :k * length].reshape(n, k, length, -1)
    prev = np.concatenate([initial[:, None], outs[:, :-1, -1]], 1)       # (n, k, n_obs)
    return ins, outs.reshape(n * k, length, -1), prev.reshape(n * k, -1)


class Windows:
    """Normalised dynamics sequences and random windows of them for multiple shooting."""

    def __init__(self, twin, inputs: np.ndarray, outputs: np.ndarray, initial: np.ndarray):
        device = twin.obs_mean.device          # the data live where the twin computes
        to = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
        with torch.no_grad():
            self.u = twin.normalise_inputs(to(inputs))                   # (N, T, n_in)
            full = torch.cat([to(initial)[:, None], to(outputs)], 1)     # (N, T+1, n_obs)
            full = twin.normalise_obs(full)
        self.n_delay = twin.config.n_delay
        pad = full[:, :1].expand(-1, self.n_delay, -1)
        self.zpad = torch.cat([pad, full], 1)                            # (N, D + T + 1, n_obs)
        self.n, self.steps = self.u.shape[:2]

    def embedded(self, idx: Tensor, t0: Tensor) -> Tensor:
        """Embedded state before input ``t0``: (len(idx), n_obs * (n_delay + 1))."""
        cols = t0[:, None] + self.n_delay - torch.arange(self.n_delay + 1, device=t0.device)[None]
        return self.zpad[idx[:, None], cols].flatten(1)

    def window(self, idx: Tensor, t0: Tensor, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """(u (B, W, n_in), y0 (B, D), target z (B, W, n_obs)) for windows starting at ``t0``."""
        steps = torch.arange(length, device=t0.device)[None] + t0[:, None]
        u = self.u[idx[:, None], steps]
        target = self.zpad[idx[:, None], steps + self.n_delay + 1]
        return u, self.embedded(idx, t0), target

    def sample(self, batch: int, length: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        dev = gen.device           # a generator on the data's device keeps the draws there
        idx = torch.randint(0, self.n, (batch,), generator=gen, device=dev)
        t0 = torch.randint(0, self.steps - length + 1, (batch,), generator=gen, device=dev)
        return self.window(idx, t0, length)
