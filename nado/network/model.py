"""Networks of twins: eq. (4) layer by layer (the paper's Algorithm 1).

A :class:`Network` is a list of hidden layers; layer ``l`` is ``n_nodes[l]``
copies of one device kind, simulated by that kind's twin (layers may mix kinds,
e.g. ASVI then NRA). Only the connection weights are parameters; the twins are
frozen (``requires_grad=False``) and held outside the state dict of weights.

Forward pass over a whole sequence ``x`` ``(B, T, n_inputs)`` (task units)::

    z_0 = x
    for l in 1..L:
        S_l = h_l(theta_l z_{l-1}(t) + b_l)       # (B, T, n_nodes, n_in) physical units
        y_l = twin_l.simulate(S_l as (B*n_nodes, T, n_in), x0)   # one batched call
        z_l = pi_l(y_l)                            # (B, T, n_nodes * features)
    o(t) = theta_{L+1} z_L(t) + b_{L+1}            # (B, T, n_outputs)

With ``readout_from="all"`` the readout sees every hidden layer, ``o(t) = theta_{L+1}
[z_1(t), ..., z_L(t)] + b_{L+1}``: the output units of cascade-correlation (Fahlman & Lebiere
1990, the algorithm the paper's cascade learning adapts) connect to all hidden units, so a
layer added to a cascade can only add features to its readout, never take the earlier ones away.

``noise=True`` simulates an SDE twin with its noise (noise-aware); ``False``
gives the deterministic path (an ODE twin is always deterministic). Initial
states are drawn from each twin's stored reset distribution
(``Twin.sample_initial``) unless ``x0`` (one ``(B*n_nodes, n_obs)`` per layer)
is given. Truncated BPTT runs burn-in and window as one sequence with ``grad_from``
(see :meth:`Network.forward`): restarting a twin from the burn-in's last observable
re-embeds its delay state and zeroes its auxiliary noise state, which a rig driven with
the whole sequence never does (measured on an EMG network of NRA twins: layer-2
activities still off by ~0.3 of their std ten steps later, 31 % of predictions changed).

Nodes are flattened sample-major: row ``b * n_nodes + j`` is node ``j`` of
sample ``b``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..device import module_device
from ..errors import ConfigError
from .maps import DeviceMaps, PiSpec

READOUT_FROM = ("last", "all")


@dataclass
class NetworkOutput:
    """outputs ``(B, T, n_outputs)``; activities: per layer ``(B, T, D_l)``; last_obs:
    per layer ``(B*n_nodes, n_obs)`` (the state to continue from); inputs: per layer
    physical inputs ``(B, T, n_nodes, n_in)``."""

    outputs: torch.Tensor
    activities: list[torch.Tensor]
    last_obs: list[torch.Tensor]
    inputs: list[torch.Tensor]


class Network(torch.nn.Module):
    """Feed-forward network of dynamical devices (see module docstring).

    twins: one twin per hidden layer (the same object may serve several layers).
    n_nodes: nodes per hidden layer. n_inputs / n_outputs: task widths.
    pi: one :class:`PiSpec` for all layers or one per layer. bias: add biases to
    every connection. init_gain: std of first-layer weights is
    ``init_gain / sqrt(fan_in)``. readout_from: ``"last"`` (the readout sees the last hidden
    layer) or ``"all"`` (every hidden layer, see the module docstring). The network is built on its
    (first) twin's device.
    """

    def __init__(self, twins: Sequence, n_nodes: Sequence[int], n_inputs: int, n_outputs: int, *,
                 pi: PiSpec | Sequence[PiSpec] | None = None, bias: bool = True,
                 init_gain: float = 1.0, readout_from: str = "last", seed: int = 0) -> None:
        super().__init__()
        twins, n_nodes = list(twins), [int(n) for n in n_nodes]
        if not twins or len(twins) != len(n_nodes):
            raise ConfigError(f"need one twin per hidden layer: got {len(twins)} twins for "
                              f"{len(n_nodes)} layers")
        if any(n < 1 for n in n_nodes) or n_inputs < 1 or n_outputs < 1:
            raise ConfigError(f"layer sizes must be >= 1: inputs={n_inputs}, nodes={n_nodes}, "
                              f"outputs={n_outputs}")
        if readout_from not in READOUT_FROM:
            raise ConfigError(f"network.readout_from must be one of {READOUT_FROM}, got {readout_from!r}")
        self.readout_from = readout_from
        pis = [pi] * len(twins) if pi is None or isinstance(pi, PiSpec) else list(pi)
        if len(pis) != len(twins):
            raise ConfigError(f"pi: give one spec or one per layer ({len(twins)}), got {len(pis)}")
        self.twins = list(twins)              # plain list: not registered, not in state_dict
        for t in self.twins:
            for p in t.parameters():
                p.requires_grad_(False)
            t.eval()
        self.n_nodes, self.n_inputs, self.n_outputs = n_nodes, int(n_inputs), int(n_outputs)
        self.maps = torch.nn.ModuleList(DeviceMaps(t, p) for t, p in zip(self.twins, pis))
        g = torch.Generator().manual_seed(int(seed))
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList() if bias else None
        fan_in = self.n_inputs
        widths = [n * m.features for n, m in zip(n_nodes, self.maps)]
        for l, n in enumerate(n_nodes + [self.n_outputs]):
            out = n * self.maps[l].n_in if l < len(n_nodes) else n
            if l == len(n_nodes) and readout_from == "all":
                fan_in = sum(widths)
            gain = init_gain if l == 0 else 1.0
            w = torch.randn(out, fan_in, generator=g) * (gain / fan_in ** 0.5)
            self.weights.append(torch.nn.Parameter(w))
            if bias:
                self.biases.append(torch.nn.Parameter(torch.zeros(out)))
            if l < len(n_nodes):
                fan_in = n * self.maps[l].features
        self.to(module_device(self.twins[0]))    # the network computes where its twins live

    @property
    def n_layers(self) -> int:
        return len(self.n_nodes)

    def layer_inputs(self, l: int, z_prev: torch.Tensor) -> torch.Tensor:
        """Physical inputs of hidden layer ``l``: ``z_prev`` ``(B, T, D)`` -> ``(B, T, n_nodes, n_in)``."""
        u = z_prev @ self.weights[l].T
        if self.biases is not None:
            u = u + self.biases[l]
        B, T = z_prev.shape[:2]
        return self.maps[l].h(u.reshape(B, T, self.n_nodes[l], self.maps[l].n_in))

    def layer_activities(self, l: int, obs: torch.Tensor, initial: torch.Tensor, B: int) -> torch.Tensor:
        """``pi`` of layer ``l``: observables ``(B*n_nodes, T, n_obs)`` -> ``(B, T, n_nodes*features)``."""
        z = self.maps[l].pi(obs, initial)                  # (B*n, T, F)
        T = z.shape[1]
        return z.reshape(B, self.n_nodes[l], T, -1).permute(0, 2, 1, 3).reshape(B, T, -1)

    def readout_input(self, activities: Sequence[torch.Tensor]) -> torch.Tensor:
        """What the readout sees, from every hidden layer's activities ``(B, T, D_l)``: the last
        one, or (``readout_from="all"``) all of them side by side ``(B, T, sum D_l)``."""
        if self.readout_from == "last":
            return activities[-1]
        if len(activities) != self.n_layers:
            raise ConfigError(f"the readout needs the activities of all {self.n_layers} layers, "
                              f"got {len(activities)}")
        return torch.cat(list(activities), dim=-1)

    def readout(self, z_last: torch.Tensor) -> torch.Tensor:
        """``o(t) = theta_{L+1} z(t) + b``: :meth:`readout_input` ``(B, T, D)`` -> ``(B, T, n_outputs)``."""
        o = z_last @ self.weights[-1].T
        return o + self.biases[-1] if self.biases is not None else o

    def forward(self, x: torch.Tensor, *, noise: bool = True, generator: torch.Generator | None = None,
                x0: Sequence[torch.Tensor] | None = None, grad_from: int = 0) -> NetworkOutput:
        """``grad_from = k > 0``: the physical inputs of steps ``< k`` are detached, so gradients
        reach the weights only through steps ``>= k`` (truncated BPTT), while the twins still
        evolve through the whole sequence from their reset - the state at step ``k`` is the one a
        rig driven with the whole sequence has (a second ``simulate`` from ``x0`` would restart
        the twin's delay embedding and auxiliary noise states)."""
        if x.ndim != 3 or x.shape[-1] != self.n_inputs:
            raise ConfigError(f"network input must be (B, T, {self.n_inputs}), got {tuple(x.shape)}")
        B, T = x.shape[:2]
        z = x.to(self.weights[0].dtype)
        acts, lasts, ins = [], [], []
        k = max(0, min(int(grad_from), T))
        for l, twin in enumerate(self.twins):
            s = self.layer_inputs(l, z)                                     # (B, T, n, n_in)
            if 0 < k and s.requires_grad:
                s = torch.cat([s[:, :k].detach(), s[:, k:]], dim=1)
            flat = s.permute(0, 2, 1, 3).reshape(B * self.n_nodes[l], T, -1)
            init = x0[l] if x0 is not None else twin.sample_initial(flat.shape[0], generator=generator)
            init = init.to(flat.dtype)
            obs = twin.simulate(flat, init, noise=noise, generator=generator)
            z = self.layer_activities(l, obs, init, B)
            acts.append(z)
            lasts.append(obs[:, -1].detach())
            ins.append(s)
        return NetworkOutput(self.readout(self.readout_input(acts)), acts, lasts, ins)

    def weight_arrays(self) -> dict[str, list]:
        """Connection weights as nested lists (JSON-able): ``{weights: [...], biases: [...]}``."""
        return {"weights": [w.detach().cpu().tolist() for w in self.weights],
                "biases": None if self.biases is None else [b.detach().cpu().tolist() for b in self.biases]}
