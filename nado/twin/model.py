"""The twin: a neural-ODE or neural-SDE model of one device, in the rig's physical units.

``Twin.simulate(s, x0)`` maps physical inputs ``s`` (B, T, n_in) to physical observables
(B, T, n_out): inputs are mapped from the active range to [-1, 1], observables standardised with
the dataset's mean/std, the embedded state ``y`` starts with every delay equal to ``x0`` (the
device sat in its reset state), ``a(t0) = 0``, and the one integrator of
:mod:`nado.twin.integrate` runs. The output at step ``t`` is the observable *after* input
``s[:, t]``, as in a :class:`nado.data.dataset.Dataset`.

Parameters (state_dict keys): ``f.{0..depth}`` (drift MLP, ``nn.Linear`` layers; output n_obs,
or n_obs * (n_delay + 1) with ``delays="learned"``, the default), and for an SDE
``g.{0..depth}`` (diffusion MLP), ``a_mat`` (n_obs, N_a) = A, ``log_tau`` (N_a,) with
``tau = h / 2 + exp(log_tau)`` steps (Euler needs ``tau > h / 2`` to be stable, so the paper's
0.2-step start is lifted to ``tau0 = 0.6`` steps by default, spread by ``1 / 0.7**k``: 0.6 .. 15
steps for 10 variables); buffer ``reset_samples`` (n_reset, n_obs): measured observables after
reset, physical units, from which :meth:`Twin.sample_initial` draws.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from nado.errors import ConfigError
from nado.twin.config import TwinConfig
from nado.twin.integrate import Packed, integrate, pack


def _mlp(n_in: int, width: int, depth: int, n_out: int) -> nn.ModuleList:
    sizes = [n_in] + [width] * depth + [n_out]
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


class Twin(nn.Module):
    """Neural-ODE (eq. 1-2) or neural-SDE (eq. 3) twin of one device. See the module docstring."""

    def __init__(self, config: TwinConfig, reset_samples: np.ndarray | Tensor | None = None):
        super().__init__()
        if not isinstance(config, TwinConfig):
            raise ConfigError("Twin needs a TwinConfig; build one with nado.twin.TwinConfig(...)")
        self.config = c = config
        d_in = c.state_dim + c.n_in
        learned = c.delays == "learned" and c.n_delay > 0
        self.f = _mlp(d_in, c.width, c.depth, c.state_dim if learned else c.n_obs)
        with torch.no_grad():                      # start near dz/dt = 0: x(t+1) ~ x(t)
            self.f[-1].weight.mul_(0.1)
            self.f[-1].bias.zero_()
        if c.kind == "sde":
            self.g = _mlp(d_in, c.width, c.depth, c.n_noise)
            with torch.no_grad():                  # small initial noise: softplus(-3) ~ 0.05
                self.g[-1].weight.mul_(0.1)
                self.g[-1].bias.fill_(-3.0)
            self.a_mat = nn.Parameter(torch.zeros(c.n_obs, c.n_aux))
            tau = torch.tensor([c.tau0 / c.tau_ratio ** k for k in range(c.n_aux)])
            self.log_tau = nn.Parameter(torch.log(torch.clamp(tau - c.h / 2, min=1e-3)))
        else:
            self.g, self.a_mat, self.log_tau = None, None, None
        self.register_buffer("obs_mean", torch.tensor(c.obs_mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.tensor(c.obs_std, dtype=torch.float32))
        self.register_buffer("input_lo", torch.tensor(c.input_lo, dtype=torch.float32))
        self.register_buffer("input_hi", torch.tensor(c.input_hi, dtype=torch.float32))
        if reset_samples is None:
            reset = torch.tensor(c.obs_mean, dtype=torch.float32).expand(c.n_reset, c.n_obs)
        else:
            reset = torch.as_tensor(np.asarray(reset_samples), dtype=torch.float32)
            if reset.shape != (c.n_reset, c.n_obs):
                raise ConfigError(f"reset_samples has shape {tuple(reset.shape)}; the config says "
                                  f"(n_reset, n_obs) = ({c.n_reset}, {c.n_obs})")
        self.register_buffer("reset_samples", reset.clone())

    # ----------------------------------------------------------------- units
    @property
    def active_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The active input range ``(lo, hi)``, arrays (n_in,) in physical units."""
        return np.asarray(self.config.input_lo), np.asarray(self.config.input_hi)

    @property
    def tau(self) -> Tensor | None:
        """Auxiliary timescales (N_a,) in steps, or None for an ODE twin."""
        return None if self.log_tau is None else self.config.h / 2 + torch.exp(self.log_tau)

    def normalise_inputs(self, s: Tensor) -> Tensor:
        return (s - self.input_lo) * (2.0 / (self.input_hi - self.input_lo)) - 1.0

    def normalise_obs(self, x: Tensor) -> Tensor:
        return (x - self.obs_mean) / self.obs_std

    def denormalise_obs(self, z: Tensor) -> Tensor:
        return z * self.obs_std + self.obs_mean

    def initial_state(self, z0: Tensor, gain: Tensor | None = None) -> Tensor:
        """Normalised measured initial observable (B, n_obs) -> the state the twin starts from:
        ``r + k * (z0 - r)`` with ``r`` the mean stored reset observable and ``k`` the
        ``config.init_state_gain`` (or ``gain``); the identity when ``k = 1``. Physical reason:
        a measurement after reset is the reset state plus readout noise; only the part ``k`` of
        its deviation is state the device carries forward (see :class:`TwinConfig`)."""
        if gain is None:
            if not self.config.init_state_gain:
                return z0
            gain = torch.tensor(self.config.init_state_gain, dtype=z0.dtype, device=z0.device)
        r = self.normalise_obs(self.reset_samples.mean(0)).to(z0.dtype)
        return r + gain * (z0 - r)

    def embed(self, z0: Tensor, gain: Tensor | None = None) -> Tensor:
        """Normalised initial observable (B, n_obs) -> embedded state (B, D), every delay = the
        initial state (:meth:`initial_state`)."""
        return self.initial_state(z0, gain).repeat(1, self.config.n_delay + 1)

    # ----------------------------------------------------------------- sampling
    def sample_initial(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """(batch, n_obs) observables drawn with replacement from the stored reset samples."""
        idx = torch.randint(0, self.reset_samples.shape[0], (batch,), generator=generator,
                            device=self.reset_samples.device)
        return self.reset_samples[idx]

    def packed(self, noise: bool = True) -> Packed:
        """The weights arranged for :func:`nado.twin.integrate.integrate` (differentiable)."""
        c = self.config
        with_g = noise and c.kind == "sde"
        return pack(self.f, self.g, self.a_mat, self.tau, c.n_obs, c.n_delay, with_g,
                    learned_delays=c.delays == "learned")

    def sample_noise(self, batch: int, steps: int, *, generator: torch.Generator | None = None,
                     dtype=torch.float32) -> Tensor:
        """Brownian increments (steps * substeps, batch, N_w) with variance h."""
        c = self.config
        dw = torch.randn((steps * c.substeps, batch, c.n_noise), generator=generator, dtype=dtype,
                         device=self.obs_mean.device)
        return dw * math.sqrt(c.h) if c.substeps != 1 else dw

    def read(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The observables an instrument reports for normalised states ``z`` (..., n_obs): ``z``
        plus white readout noise ``config.readout_std * eps`` (see :class:`TwinConfig`); ``z``
        itself when the twin has none. Only for a noisy simulation."""
        if not self.config.readout_std:
            return z
        std = torch.tensor(self.config.readout_std, dtype=z.dtype, device=z.device)
        return z + std * torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)

    # ----------------------------------------------------------------- simulation
    def simulate_normalised(self, u: Tensor, z0: Tensor, *, noise: bool = True,
                            generator: torch.Generator | None = None,
                            dw: Tensor | None = None) -> Tensor:
        """Normalised twin: u (B, T, n_in) in [-1, 1], z0 (B, n_obs) -> z (B, T, n_obs); with
        noise, the states integrated with ``dw`` then read with the readout noise (:meth:`read`)."""
        c = self.config
        use_noise = noise and c.kind == "sde"
        if use_noise and dw is None:
            dw = self.sample_noise(u.shape[0], u.shape[1], generator=generator, dtype=u.dtype)
        z = integrate(self.packed(use_noise), u, self.embed(z0), method=c.method,
                      substeps=c.substeps, dw=dw if use_noise else None)
        return self.read(z, generator) if use_noise else z

    def simulate(self, s: Tensor, x0: Tensor | None = None, *, noise: bool = True,
                 generator: torch.Generator | None = None) -> Tensor:
        """Drive the twin: s (B, T, n_in) physical inputs -> (B, T, n_obs) physical observables.

        x0 (B, n_obs) is the observable after reset (None: drawn from the stored reset
        distribution with ``generator``). ``noise=False`` (or an ODE twin) gives the
        deterministic path. Differentiable w.r.t. ``s`` (and ``x0``).
        """
        c = self.config
        dtype, device = self.obs_mean.dtype, self.obs_mean.device
        if not torch.is_tensor(s):
            s = torch.as_tensor(np.asarray(s), dtype=dtype, device=device)
        elif s.dtype != dtype or s.device != device:
            s = s.to(device, dtype)  # differentiable: gradients still reach the caller's s
        if s.dim() != 3 or s.shape[-1] != c.n_in:
            raise ConfigError(f"simulate needs s of shape (B, T, {c.n_in}); got {tuple(s.shape)}")
        if x0 is None:
            x0 = self.sample_initial(s.shape[0], generator=generator).to(s.dtype)
        elif not torch.is_tensor(x0):
            x0 = torch.as_tensor(np.asarray(x0), dtype=s.dtype, device=device)
        else:
            x0 = x0.to(device, s.dtype)
        if x0.shape != (s.shape[0], c.n_obs):
            raise ConfigError(f"x0 must have shape (B, n_obs) = ({s.shape[0]}, {c.n_obs}); "
                              f"got {tuple(x0.shape)}")
        z = self.simulate_normalised(self.normalise_inputs(s), self.normalise_obs(x0),
                                     noise=noise, generator=generator)
        return self.denormalise_obs(z)

    def forward(self, s: Tensor, x0: Tensor | None = None, **kw) -> Tensor:
        return self.simulate(s, x0, **kw)


def config_from_dataset(dataset, kind: str, **overrides) -> TwinConfig:
    """A :class:`TwinConfig` with the dataset's shapes, active range and observable statistics."""
    y = np.asarray(dataset.dynamics_outputs, dtype=np.float64).reshape(-1, dataset.n_out)
    std = y.std(0)
    std = np.where(std > 0, std, 1.0)
    reset = np.asarray(dataset.reset_initial)
    if len(reset) == 0:
        reset = np.asarray(dataset.dynamics_initial)
    base = dict(kind=kind, n_in=dataset.n_in, n_obs=dataset.n_out,
                input_lo=tuple(np.asarray(dataset.active_lo, float).ravel()),
                input_hi=tuple(np.asarray(dataset.active_hi, float).ravel()),
                obs_mean=tuple(y.mean(0)), obs_std=tuple(std),
                n_reset=int(min(max(len(reset), 1), 4096)))
    if kind == "ode":
        base["n_aux"] = 0
    base.update(overrides)
    return TwinConfig(**base)


def reset_samples_from_dataset(dataset, n_reset: int, seed: int = 0) -> np.ndarray:
    """Up to ``n_reset`` rows of the dataset's reset distribution (falls back to initial states)."""
    reset = np.asarray(dataset.reset_initial, dtype=np.float64)
    if len(reset) == 0:
        reset = np.asarray(dataset.dynamics_initial, dtype=np.float64)
    if len(reset) > n_reset:
        reset = reset[np.random.default_rng(seed).choice(len(reset), n_reset, replace=False)]
    if len(reset) < n_reset:
        reset = reset[np.resize(np.arange(len(reset)), n_reset)]
    return reset
