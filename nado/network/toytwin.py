"""A tiny analytic twin honouring the Twin interface, for tests and examples.

``ToyTwin`` is a noisy leaky integrator with a tanh input nonlinearity, the
same family as :class:`bridge.backends.testrigs.LeakyRig`::

    y(t+1) = y(t) + rate * (tanh(gain * (s(t) - centre) / (hi - lo)) - y(t)) + noise_std * xi

(``centre`` defaults to the middle of the input range ``lo..hi``; with
``centre=0`` and ``gain = G * w * (hi - lo)`` it is LeakyRig's one-channel map.)

It is differentiable w.r.t. ``s``, has ``simulate``, ``sample_initial``,
``active_range`` and a ``config`` with ``kind``, ``n_in``, ``n_obs``,
``obs_mean``, ``obs_std``, so network code can be exercised before (or without)
fitting a neural twin. It is not a fitted model of any device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ToyTwinConfig:
    kind: str = "sde"
    n_in: int = 1
    n_obs: int = 1
    input_lo: float = 0.0
    input_hi: float = 1.0
    rate: float = 0.5
    gain: float = 4.0
    noise_std: float = 0.05
    init_std: float = 0.05
    obs_mean: float = 0.0
    obs_std: float = 0.5
    centre: float | None = None


class ToyTwin(torch.nn.Module):
    """See the module docstring. ``simulate(s (B,T,n_in), x0 (B,n_obs)|None) -> (B,T,n_obs)``."""

    def __init__(self, config: ToyTwinConfig | None = None, **kw) -> None:
        super().__init__()
        self.config = config or ToyTwinConfig(**kw)
        c = self.config
        # one real parameter, so "twins stay frozen" is testable
        self.gain = torch.nn.Parameter(torch.full((c.n_obs,), float(c.gain)))

    @property
    def active_range(self):
        c = self.config
        return torch.full((c.n_in,), c.input_lo), torch.full((c.n_in,), c.input_hi)

    def sample_initial(self, B: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.config.init_std * torch.randn(B, self.config.n_obs, generator=generator,
                                                 device=self.gain.device)

    def simulate(self, s: torch.Tensor, x0: torch.Tensor | None = None, *, noise: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        B, T, _ = s.shape
        y = self.sample_initial(B, generator) if x0 is None else x0
        centre = 0.5 * (c.input_lo + c.input_hi) if c.centre is None else c.centre
        drive = torch.tanh(self.gain * (s.mean(-1, keepdim=True) - centre) / (c.input_hi - c.input_lo))
        noisy = noise and c.kind == "sde" and c.noise_std > 0
        out = []
        for t in range(T):
            y = y + c.rate * (drive[:, t] - y)
            if noisy:
                y = y + c.noise_std * torch.randn(y.shape, generator=generator, device=y.device)
            out.append(y)
        return torch.stack(out, dim=1)
