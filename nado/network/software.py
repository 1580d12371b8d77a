"""Software reference networks of the same shape (the paper's Supplementary Fig. 10).

- ``static``: a per-step MLP, ``h_l(t) = tanh(W_l h_{l-1}(t) + b_l)``: no memory,
  so at the last step it only sees the last input frame.
- ``leaky``: leaky-integrator units, ``h_l(t) = (1-a_l) h_l(t-1) + a_l tanh(W_l
  h_{l-1}(t) + b_l)`` with a learnable leak ``a_l = sigmoid(c_l)`` per unit.

Both have the :class:`~nado.network.model.Network` call signature (``noise`` and
``generator`` are ignored; ``x0`` continues the leaky states) so the same
trainer fits them.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError
from .model import NetworkOutput


class SoftwareNetwork(torch.nn.Module):
    """Static or leaky-integrator MLP: inputs ``(B, T, n_inputs)`` -> ``(B, T, n_outputs)``."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_outputs: int, *, kind: str = "leaky",
                 seed: int = 0) -> None:
        super().__init__()
        if kind not in ("static", "leaky"):
            raise ConfigError(f"software network kind must be 'static' or 'leaky', got {kind!r}")
        self.kind, self.n_inputs, self.n_outputs = kind, int(n_inputs), int(n_outputs)
        self.n_nodes = [int(h) for h in hidden]
        torch.manual_seed(int(seed))
        sizes = [self.n_inputs] + self.n_nodes
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = torch.nn.Linear(sizes[-1], self.n_outputs)
        self.leak = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(h)) for h in self.n_nodes) \
            if kind == "leaky" else None

    @property
    def n_layers(self) -> int:
        return len(self.n_nodes)

    def forward(self, x: torch.Tensor, *, noise: bool = True, generator=None,
                x0: Sequence[torch.Tensor] | None = None) -> NetworkOutput:
        B, T = x.shape[:2]
        z = x.to(self.out.weight.device, self.out.weight.dtype)
        acts, lasts = [], []
        for l, lin in enumerate(self.layers):
            drive = torch.tanh(lin(z))
            if self.kind == "leaky":
                a = torch.sigmoid(self.leak[l])
                h = x0[l] if x0 is not None else z.new_zeros(B, self.n_nodes[l])
                hs = []
                for t in range(T):
                    h = (1 - a) * h + a * drive[:, t]
                    hs.append(h)
                z = torch.stack(hs, dim=1)
            else:
                z = drive
            acts.append(z)
            lasts.append(z[:, -1].detach())
        return NetworkOutput(self.out(z), acts, lasts, [])
