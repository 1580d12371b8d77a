"""The two device maps of eq. (4): ``h`` (pre-processing) and ``pi`` (post-processing).

``h`` maps raw pre-activations ``u = theta_{l+1} z_l(t) + b`` into each device's
active input range, taken from its twin (``Twin.active_range``, the range that
data collection found, in the rig's physical units, e.g. Oe)::

    S = lo + (hi - lo) * sigmoid(u)          # elementwise, per input channel

so every input a network sends to a device is inside the range the twin was
fitted on, whatever the weights are; ``u = 0`` lands mid-range.

``pi`` maps a device's observables to what it passes on, ``z = pi(y)``. The
normalisation uses the twin's constants (``obs_mean``, ``obs_std`` from its
config), in simulation and after transfer alike, so that physical activities
and simulated ones share one scale. A :class:`PiSpec` chooses:

- ``delays``: lags in steps, ``(0,)`` = the current observable (default);
  ``(0, 1, 2)`` passes ``y(t), y(t-1), y(t-2)``. Before the first step the
  observable after the reset (the initial state) is used.
- ``channels``: indices of observable channels to keep (``None`` = all; the
  full ASVI spectrum is all 60).
- ``project``: if set to ``k``, the kept channels are projected onto ``k``
  fixed random orthonormal directions (seeded by ``project_seed``) - a cheap
  way to pass a spectrum on with fewer features.

Features per node = ``len(delays) * (project or len(channels) or n_obs)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class PiSpec:
    """What a node passes on; see the module docstring."""

    delays: tuple[int, ...] = (0,)
    channels: tuple[int, ...] | None = None
    project: int | None = None
    project_seed: int = 0

    def __post_init__(self) -> None:
        if not self.delays or any(int(d) < 0 for d in self.delays):
            raise ConfigError(f"pi.delays must be a non-empty list of lags >= 0, got {self.delays}")
        if self.project is not None and int(self.project) < 1:
            raise ConfigError(f"pi.project must be >= 1 (or absent), got {self.project}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "PiSpec":
        d = dict(d or {})
        unknown = set(d) - {"delays", "channels", "project", "project_seed"}
        if unknown:
            raise ConfigError(f"unknown pi key(s) {sorted(unknown)}; use delays, channels, project, project_seed")
        if "delays" in d:
            d["delays"] = tuple(int(x) for x in d["delays"])
        if d.get("channels") is not None:
            d["channels"] = tuple(int(x) for x in d["channels"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {"delays": list(self.delays), "channels": None if self.channels is None else list(self.channels),
                "project": self.project, "project_seed": self.project_seed}


def twin_constants(twin) -> dict[str, np.ndarray]:
    """``{lo, hi, obs_mean, obs_std}`` float64 arrays of a twin ((n_in,), (n_obs,)).

    Reads ``twin.active_range`` and ``twin.config.obs_mean/obs_std``; a missing
    std is taken as 1 and a missing mean as 0 (then ``pi`` only selects).
    """
    lo, hi = twin.active_range
    lo = np.atleast_1d(np.asarray(_np(lo), dtype=np.float64))
    hi = np.atleast_1d(np.asarray(_np(hi), dtype=np.float64))
    if np.any(hi <= lo):
        raise ConfigError(f"twin active range is empty: lo={lo}, hi={hi}; refit the twin on a dataset "
                          "whose active_lo < active_hi")
    cfg = getattr(twin, "config", None)
    n_obs = int(getattr(cfg, "n_obs", 1))
    mean = getattr(cfg, "obs_mean", None)
    std = getattr(cfg, "obs_std", None)
    mean = np.zeros(n_obs) if mean is None else np.broadcast_to(np.asarray(_np(mean), dtype=np.float64), (n_obs,))
    std = np.ones(n_obs) if std is None else np.broadcast_to(np.asarray(_np(std), dtype=np.float64), (n_obs,))
    std = np.where(std > 0, std, 1.0)
    return {"lo": lo, "hi": hi, "obs_mean": mean.copy(), "obs_std": std.copy()}


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


class DeviceMaps(torch.nn.Module):
    """``h`` and ``pi`` for one layer's device kind (constants as buffers, no parameters)."""

    def __init__(self, twin, pi: PiSpec | None = None) -> None:
        super().__init__()
        c = twin_constants(twin)
        self.pi_spec = pi or PiSpec()
        self.n_in = int(c["lo"].shape[0])
        self.n_obs = int(c["obs_mean"].shape[0])
        self.register_buffer("lo", torch.tensor(c["lo"], dtype=torch.float32))
        self.register_buffer("hi", torch.tensor(c["hi"], dtype=torch.float32))
        self.register_buffer("obs_mean", torch.tensor(c["obs_mean"], dtype=torch.float32))
        self.register_buffer("obs_std", torch.tensor(c["obs_std"], dtype=torch.float32))
        ch = self.pi_spec.channels
        if ch is not None and (min(ch) < 0 or max(ch) >= self.n_obs):
            raise ConfigError(f"pi.channels {list(ch)} out of range for a device with {self.n_obs} observables")
        self.register_buffer("channels", torch.arange(self.n_obs) if ch is None else torch.tensor(ch))
        n_ch = int(self.channels.numel())
        if self.pi_spec.project is not None:
            g = torch.Generator().manual_seed(int(self.pi_spec.project_seed))
            k = int(self.pi_spec.project)
            q, _ = torch.linalg.qr(torch.randn(max(n_ch, k), max(n_ch, k), generator=g))
            self.register_buffer("projection", q[:n_ch, :k].contiguous())
            n_ch = k
        else:
            self.projection = None
        self.features = len(self.pi_spec.delays) * n_ch

    def h(self, u: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``(..., n_in)`` -> physical inputs inside ``[lo, hi]``."""
        return self.lo + (self.hi - self.lo) * torch.sigmoid(u)

    def pi(self, obs: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        """Observables ``(M, T, n_obs)`` (+ ``initial`` ``(M, n_obs)``) -> ``(M, T, features)``."""
        y = (obs - self.obs_mean) / self.obs_std
        y0 = (initial - self.obs_mean) / self.obs_std
        y = y.index_select(-1, self.channels)
        y0 = y0.index_select(-1, self.channels)
        if self.projection is not None:
            y = y @ self.projection
            y0 = y0 @ self.projection
        parts = []
        T = y.shape[1]
        for d in self.pi_spec.delays:
            if d == 0:
                parts.append(y)
            else:
                pad = y0.unsqueeze(1).expand(-1, min(d, T), -1)
                parts.append(torch.cat([pad, y[:, :T - d]], dim=1) if d < T else pad)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
