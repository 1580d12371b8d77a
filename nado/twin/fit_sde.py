"""Fit a neural-SDE twin: drift from the ODE fit, noise by moment matching then a conditional WGAN-GP.

Data: the repeats set, M sequences each driven R times. Every batch takes ``group`` sequences
with (up to ``max_repeats`` of) their repeats; for each real repeat the twin generates one
trajectory driven by the same inputs from the same measured initial state, so real and generated
windows are paired by condition.

1. Drift: ``f`` is copied from the ODE twin (fitted here with :func:`fit_ode` when not given)
   and frozen unless ``fit_drift=True`` (then fine-tuned at ``lr / 10``).
2. Warm start (``warm_iters``): moment matching of ``g``, ``A`` and ``tau``: per sequence and
   step, the squared errors of the mean, of the std over repeats, and of the std of the one-step
   increments (normalised units). This alone gives a sensible spread and keeps the GAN from
   starting in (or collapsing to) the zero-noise solution.
3. WGAN-GP (``gan_iters``): a critic sees ``(u, z0, z_1..T)`` flattened (inputs, initial state and
   window) and is trained ``critic_iters`` times per generator step with the gradient penalty on
   interpolates between paired real and generated windows. Generator loss ``"features"``
   (default): per sequence, squared errors of the mean and std over repeats of the critic's
   penultimate features; or ``"adversarial"``: ``-critic(fake)``. The warm-start moment loss stays
   on with weight ``moment_weight`` as a regulariser.
4. Model selection: every ``eval_every`` iterations of either phase the twin generates as many
   samples as there are repeats for each held-out sequence (``val_fraction`` of M) and the
   state with the lowest ``w1`` (:func:`nado.twin.metrics.w1`, the twin report's metric) to the
   held-out repeats is kept.
5. Initial states (``fit_initial``, default on): each generated repeat starts from its measured
   initial observable, which is the reset state plus that measurement's readout noise. With the
   drift frozen, that noise is carried (and, for the ASVI, amplified 3-4x in the first steps:
   a 60-channel spectrum taken as the state) into every step, and no diffusion ``g`` can undo
   it. The per-channel gain ``k`` of :attr:`TwinConfig.init_state_gain` (the part of the
   deviation from the mean reset observable that is state) is estimated once, before the warm
   start, by :func:`initial_state_gain`, and stored in the twin's config. Measured on the
   emulated ASVI (Mackey-Glass scenario, held-out repeats, ``nado twin report`` metric): std
   ratio 1.91 from the measured initial states, 1.11 from the mean initial state.
6. Readout noise (``fit_readout``, default on): the part ``1 - k`` of the repeats' spread after
   reset is the spread of one measurement around the state, i.e. the instrument's readout noise,
   white in time. Its variance per channel, ``(1 - k) * var_repeats(z0)`` (normalised units,
   averaged over the training sequences), becomes :attr:`TwinConfig.readout_std`: every generated
   observable is the state plus that noise (:meth:`nado.twin.model.Twin.read`), and the
   diffusion ``g`` fitted after it only has to supply the process noise the device carries
   forward. Without it the ASVI twin (mostly readout noise) had a std ratio of 1.28 on held-out
   repeats: process noise standing in for readout noise is amplified by the frozen drift over
   the first steps (per-step ratio 1.6-1.7 over steps 1-6).

Measured on the emulated NRA (4000 x 20 dynamics, 100 x 20 repeats, SNR ~2.3): the best
validation W1 is reached within the warm start and the WGAN phase holds it (no collapse over 600
iterations; std ratio 0.85-0.9 throughout); on held-out repeats W1 is 2.1x (own metrics) to
2.3x (``nado twin report``, before the two shared one metrics module) smaller than the ODE twin's, std ratio 0.89-0.98. Defaults take
15-40 s on one core.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from nado.errors import ConfigError, DatasetError
from nado.device import generator, resolve_device, to_device
from nado.twin.config import TwinConfig
from nado.twin.data import split_indices
from nado.twin.fit_ode import fit_ode
from nado.twin.integrate import integrate
from nado.twin.metrics import std_ratio, w1
from nado.twin.model import Twin, config_from_dataset, reset_samples_from_dataset


class Critic(nn.Module):
    """Conditional critic: (u (B,T,n_in), z0 (B,n), z (B,T,n)) -> (score (B,), features (B,F))."""

    def __init__(self, steps: int, n_in: int, n_obs: int, width: int = 128):
        super().__init__()
        d = steps * (n_in + n_obs) + n_obs
        self.body = nn.Sequential(nn.Linear(d, width), nn.LeakyReLU(0.2),
                                  nn.Linear(width, width), nn.LeakyReLU(0.2))
        self.head = nn.Linear(width, 1)

    def forward(self, u: Tensor, z0: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.body(torch.cat([u.flatten(1), z0, z.flatten(1)], 1))
        return self.head(feats).squeeze(1), feats


def _group_moments(x: Tensor, g: int) -> tuple[Tensor, Tensor]:
    """x (g*R, ...) -> mean and std over the R repeats of each of the g groups."""
    x = x.view(g, -1, *x.shape[1:])
    return x.mean(1), x.std(1)


def _channel_weights(s: Tensor) -> Tensor:
    """(n,) weights, mean 1 over channels, inversely proportional to each channel's mean spread."""
    w = s.detach().mean(tuple(range(s.dim() - 1)))
    return w.mean() / w.clamp_min(1e-6 * float(w.mean()) + 1e-12)


def moment_loss(real: Tensor, fake: Tensor, g: int) -> Tensor:
    """Squared errors of mean, std and increment std over repeats (B=g*R, T, n).

    The two spread terms are weighted per channel by the device's inverse mean spread (weights
    with mean 1, so one channel is unweighted): every channel's spread counts in proportion to
    its own size. Unweighted, a spectrum's quiet channels (in normalised units) hardly entered the
    loss, and the twin spread there was 2-3x the device's (ASVI std ratio 1.4 per channel, 1.04
    pooled)."""
    mr, sr = _group_moments(real, g)
    mf, sf = _group_moments(fake, g)
    _, dr = _group_moments(real.diff(dim=1), g)
    _, df = _group_moments(fake.diff(dim=1), g)
    return ((mr - mf) ** 2).mean() + (((sr - sf) * _channel_weights(sr)) ** 2).mean() \
        + (((dr - df) * _channel_weights(dr)) ** 2).mean()


def _sde_config(ode: Twin, config: TwinConfig | None, dataset) -> TwinConfig:
    oc = ode.config
    if config is None:
        config = config_from_dataset(dataset, "sde", n_delay=oc.n_delay, width=oc.width,
                                     depth=oc.depth, delays=oc.delays)
    if config.kind != "sde":
        raise ConfigError(f"fit_sde needs a config with kind='sde', got {config.kind!r}")
    if config.delays != oc.delays:     # architecture of f follows the ODE twin
        config = config.replace(delays=oc.delays)
    for key in ("n_in", "n_obs", "n_delay", "width", "depth"):
        if getattr(config, key) != getattr(oc, key):
            raise ConfigError(f"fit_sde: config.{key}={getattr(config, key)} differs from the ODE "
                              f"twin's {getattr(oc, key)}; the drift is taken from the ODE twin")
    return config.replace(input_lo=oc.input_lo, input_hi=oc.input_hi, obs_mean=oc.obs_mean,
                          obs_std=oc.obs_std)


@torch.no_grad()
def initial_state_gain(twin: Twin, u: Tensor, z0: Tensor, real: Tensor) -> Tensor:
    """Per channel, the share of a measured initial observable's deviation that is state (n_obs,).

    u (M, T, n_in) normalised inputs, z0 (M, R, n) measured initial observables and real
    (M, R, T, n) the repeats (normalised). Over the repeats of each sequence, the slope of the
    device's first output on the initial observable, ``beta_dev = cov(dz0, dy0) / var(dz0)``,
    is compared with the same slope of the noise-free twin started from the measured initial
    states, ``beta_twin``: ``k = clip(beta_dev / beta_twin, 0, 1)`` (1 where the twin does not
    respond). Readout noise in ``z0`` does not reach the device's next output (``beta_dev ~ 0``,
    k ~ 0); reset noise of the state does (k ~ 1).
    """
    M, R, n = z0.shape
    c = twin.config
    flat = z0.reshape(M * R, n)
    y0 = twin.embed(flat, torch.ones(n, dtype=flat.dtype))
    fake = integrate(twin.packed(False), u[:, :1].repeat_interleave(R, 0), y0, method=c.method,
                     substeps=c.substeps)[:, 0].view(M, R, n)
    dz = z0 - z0.mean(1, keepdim=True)
    var = (dz ** 2).sum((0, 1)).clamp_min(1e-12)
    d_dev = real[:, :, 0] - real[:, :, 0].mean(1, keepdim=True)
    d_twin = fake - fake.mean(1, keepdim=True)
    beta_dev, beta_twin = (dz * d_dev).sum((0, 1)) / var, (dz * d_twin).sum((0, 1)) / var
    k = torch.where(beta_twin.abs() > 1e-3, beta_dev / beta_twin, torch.ones_like(beta_dev))
    return k.clamp(0.0, 1.0)


@torch.enable_grad()           # fitting works even when called under torch.no_grad()
def fit_sde(dataset, ode_twin: Twin | None = None, config: TwinConfig | None = None, *,
            seed: int = 0, warm_iters: int = 300, gan_iters: int = 300, critic_iters: int = 3,
            group: int = 8, max_repeats: int = 32, lr: float = 3e-3, critic_lr: float = 1e-3,
            gp_weight: float = 10.0, generator_loss: str = "features", moment_weight: float = 1.0,
            fit_drift: bool = False, val_fraction: float = 0.2, eval_every: int = 25,
            fit_initial: bool = True, fit_readout: bool = True, progress: bool = True, device: str | torch.device | None = "auto"
            ) -> tuple[Twin, dict[str, Any]]:
    """Fit a neural-SDE twin to ``dataset``'s repeats set; see the module docstring.

    Returns ``(twin, history)``; history: ``warm_loss``, ``critic_loss``, ``gen_loss`` per
    iteration, ``val`` (list of ``{iter, w1, std_ratio}``, :mod:`nado.twin.metrics` on normalised units), ``best``,
    ``seconds`` and, when the ODE was fitted here, ``ode`` (its history). ``device``: where to
    fit (:func:`nado.device.resolve_device`); the twin is returned on it.
    """
    device = resolve_device(device)
    t_start = time.perf_counter()
    if generator_loss not in ("features", "adversarial"):
        raise ConfigError(f"generator_loss must be 'features' or 'adversarial', got {generator_loss!r}")
    reps = np.asarray(dataset.repeats_outputs)
    if reps.ndim != 4 or reps.shape[0] < 2 or reps.shape[1] < 2:
        raise DatasetError(f"fit_sde needs a repeats set (M, R, T, n_out) with M >= 2 and R >= 2, "
                           f"got shape {reps.shape}; collect one with `nado collect --repeats M R`")
    history: dict[str, Any] = {"warm_loss": [], "critic_loss": [], "gen_loss": [], "val": []}
    if ode_twin is None:
        ode_twin, history["ode"] = fit_ode(dataset, seed=seed, progress=progress, device=device)
    config = _sde_config(ode_twin, config, dataset)
    rng = np.random.default_rng(seed)
    gen = generator(device, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        twin = Twin(config, reset_samples_from_dataset(dataset, config.n_reset, seed)).to(device)
        critic = Critic(reps.shape[2], config.n_in, config.n_obs).to(device)
    twin.f.load_state_dict(ode_twin.f.state_dict())
    for p in twin.f.parameters():
        p.requires_grad_(fit_drift)

    to = lambda a: to_device(np.asarray(a), device)  # noqa: E731
    with torch.no_grad():
        u_all = twin.normalise_inputs(to(dataset.repeats_inputs))         # (M, T, n_in)
        z_all = twin.normalise_obs(to(reps))                              # (M, R, T, n)
        z0_all = twin.normalise_obs(to(dataset.repeats_initial))          # (M, R, n)
    train_idx, val_idx = split_indices(len(u_all), val_fraction, rng)
    n_rep = z_all.shape[1]
    r_batch = min(n_rep, max_repeats)
    group = min(group, len(train_idx))

    # the initial-state gain k (module docstring, step 5), estimated once and kept fixed
    k_init = initial_state_gain(twin, u_all[train_idx], z0_all[train_idx], z_all[train_idx]) \
        if fit_initial else None
    if k_init is not None:
        twin.config = config = config.replace(init_state_gain=tuple(k_init.tolist()))
        history["init_state_gain"] = {"mean": float(k_init.mean()), "min": float(k_init.min()),
                                      "max": float(k_init.max())}
    if fit_readout:     # the readout noise (module docstring, step 6), estimated once and kept fixed
        k = k_init if k_init is not None else torch.ones(config.n_obs, device=device)
        spread = z0_all[train_idx].var(1).mean(0)                        # (n,) normalised units
        readout = ((1.0 - k) * spread).clamp_min(0.0).sqrt()
        twin.config = config = config.replace(readout_std=tuple(readout.tolist()))
        history["readout_std"] = {"mean": float(readout.mean()), "min": float(readout.min()),
                                  "max": float(readout.max())}

    def simulate(u: Tensor, z0: Tensor, g: torch.Generator) -> Tensor:
        dw = twin.sample_noise(u.shape[0], u.shape[1], generator=g)
        return twin.read(integrate(twin.packed(True), u, twin.embed(z0), method=config.method,
                                   substeps=config.substeps, dw=dw), g)

    def batch() -> tuple[Tensor, Tensor, Tensor]:
        seqs = torch.as_tensor(rng.choice(train_idx, group, replace=False), device=device)
        reps_ = torch.as_tensor(np.stack([rng.choice(n_rep, r_batch, replace=False)
                                          for _ in range(group)]), device=device)
        u = u_all[seqs].repeat_interleave(r_batch, 0)
        z0 = z0_all[seqs[:, None], reps_].flatten(0, 1)
        real = z_all[seqs[:, None], reps_].flatten(0, 1)
        return u, z0, real

    val_u = u_all[val_idx].repeat_interleave(n_rep, 0)
    val_z0 = z0_all[val_idx].flatten(0, 1)
    val_real = z_all[val_idx]

    def validate(it: int, phase: str) -> float:
        with torch.no_grad():
            fake = simulate(val_u, val_z0, generator(device, seed + 1))
            fake = fake.view(len(val_idx), n_rep, *fake.shape[1:])
            dist, ratio = w1(val_real, fake), std_ratio(val_real, fake)
        history["val"].append({"iter": it, "phase": phase, "w1": dist, "std_ratio": ratio})
        return dist

    g_params = [p for n, p in twin.named_parameters() if not n.startswith("f.")]
    groups = [{"params": g_params, "lr": lr}]
    if fit_drift:
        groups.append({"params": list(twin.f.parameters()), "lr": lr / 10})
    opt = torch.optim.Adam(groups, betas=(0.5, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=critic_lr, betas=(0.5, 0.9))

    def snapshot() -> dict:
        return copy.deepcopy(twin.state_dict())

    best_w1, best_state = validate(0, "start"), snapshot()
    history["best"] = history["val"][-1]

    # the iterations' losses stay on the device and are read back at each validation (which
    # reads the device anyway), not once per iteration: no device sync per step on a GPU
    pending: dict[str, list[Tensor]] = {"warm_loss": [], "critic_loss": [], "gen_loss": []}

    def read_losses() -> None:
        for key, losses in pending.items():
            if losses:
                history[key] += torch.stack(losses).tolist()
                losses.clear()

    def consider(it: int, phase: str) -> None:
        nonlocal best_w1, best_state
        read_losses()
        dist = validate(it, phase)
        if dist < best_w1:
            best_w1, best_state = dist, snapshot()
            history["best"] = history["val"][-1]

    bar = tqdm(total=warm_iters + gan_iters, desc="fit sde", disable=not progress, leave=False)
    for it in range(1, warm_iters + 1):
        u, z0, real = batch()
        loss = moment_loss(real, simulate(u, z0, gen), group)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g_params, 1.0)
        opt.step()
        pending["warm_loss"].append(loss.detach())
        bar.update()
        if it % eval_every == 0 or it == warm_iters:
            consider(it, "warm")
    for p in opt.param_groups:
        p["lr"] *= 0.3                      # the GAN phase refines; keep its steps small
    for it in range(1, gan_iters + 1):
        u, z0, real = batch()
        with torch.no_grad():
            fake = simulate(u, z0, gen)
        for _ in range(critic_iters):       # critic: WGAN loss + gradient penalty
            eps = torch.rand(real.shape[0], 1, 1, generator=gen, device=device)
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            score_mix, _ = critic(u, z0, mix)
            grad, = torch.autograd.grad(score_mix.sum(), mix, create_graph=True)
            gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            loss_c = critic(u, z0, fake)[0].mean() - critic(u, z0, real)[0].mean() + gp_weight * gp
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        fake = simulate(u, z0, gen)
        score_f, feat_f = critic(u, z0, fake)
        if generator_loss == "features":
            with torch.no_grad():
                _, feat_r = critic(u, z0, real)
            mr, sr = _group_moments(feat_r, group)
            mf, sf = _group_moments(feat_f, group)
            loss_g = ((mr - mf) ** 2).mean() + ((sr - sf) ** 2).mean()
        else:
            loss_g = -score_f.mean()
        if moment_weight:
            loss_g = loss_g + moment_weight * moment_loss(real, fake, group)
        opt.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(g_params, 1.0)
        opt.step()
        critic.zero_grad(set_to_none=True)
        pending["critic_loss"].append(loss_c.detach())
        pending["gen_loss"].append(loss_g.detach())
        bar.update()
        if it % eval_every == 0 or it == gan_iters:
            consider(warm_iters + it, "gan")
    bar.close()
    read_losses()
    twin.load_state_dict(best_state)
    for p in twin.parameters():
        p.requires_grad_(True)
    twin.eval()
    history["seconds"] = time.perf_counter() - t_start
    return twin, history
