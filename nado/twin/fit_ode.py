"""Fit a neural-ODE twin by multiple shooting on random windows of the dynamics set.

Each iteration draws ``batch`` windows (random sequence, random start), starts the twin from the
measured embedded state at the window start, rolls it out freely for ``window`` steps, and takes
the MSE (normalised units) to the measured observables. Adam with a cosine learning-rate decay and
gradient clipping; if the validation loss diverges (non-finite or 3x the best) the best state is
restored and the learning rate halved (``history["restarts"]``). A random ``val_fraction`` of the dynamics sequences is held out; after every
epoch the twin is rolled out over the full held-out sequences from their reset states and the
epoch with the lowest validation MSE is kept (model selection never sees a test split). Seeded:
same data and seed, same twin.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nado.errors import ConfigError, DatasetError
from nado.device import generator, resolve_device
from nado.twin.config import TwinConfig
from nado.twin.integrate import integrate
from nado.twin.data import Windows, chunk_long, split_indices
from nado.twin.model import Twin, config_from_dataset, reset_samples_from_dataset


def _check(dataset) -> None:
    if dataset.dynamics_inputs.ndim != 3 or dataset.dynamics_outputs.ndim != 3:
        raise DatasetError("dynamics_inputs/outputs must be (N, T, channels); is this a nado Dataset?")
    if len(dataset.dynamics_inputs) == 0:
        raise DatasetError("the dataset has no dynamics sequences; collect some with `nado collect`")


def _from_embedded(twin: Twin, u: torch.Tensor, y0: torch.Tensor, dw=None) -> torch.Tensor:
    """Integrate from an embedded normalised state y0 (B, D); dw None = deterministic."""
    c = twin.config
    use_noise = dw is not None
    return integrate(twin.packed(use_noise), u, y0, method=c.method, substeps=c.substeps, dw=dw)


@torch.enable_grad()           # fitting works even when called under torch.no_grad()
def fit_ode(dataset, config: TwinConfig | None = None, *, seed: int = 0, epochs: int = 60,
            window: int | None = None, batch: int = 512, iters_per_epoch: int | None = None,
            lr: float = 1e-2, val_fraction: float = 0.1, progress: bool = True,
            device: str | torch.device | None = "auto") -> tuple[Twin, dict[str, Any]]:
    """Fit a neural-ODE twin to ``dataset`` (a :class:`nado.data.dataset.Dataset`).

    config: architecture (None = ``config_from_dataset(dataset, "ode")``: n_delay 5, width 64,
    depth 2, Euler; its normalisation constants are always taken from the dataset).
    window: shooting window in steps (None = the sequence length, at most 50, the paper's value).
    iters_per_epoch: None = one pass over the training sequences (N_train / batch, at least 20).
    Returns ``(twin, history)``; history has ``train_loss``/``val_loss`` per epoch (normalised
    MSE), ``best_epoch``, ``val_nrmse`` (RMSE / std of the held-out observables), ``seconds``.
    device: where to fit (:func:`nado.device.resolve_device`); the twin is returned on it, and
    the windows are drawn there (a CPU and a GPU fit draw different windows).
    """
    device = resolve_device(device)
    _check(dataset)
    t_start = time.perf_counter()
    if config is None:
        config = config_from_dataset(dataset, "ode")
    elif config.kind != "ode":
        raise ConfigError(f"fit_ode needs a config with kind='ode', got {config.kind!r}")
    else:   # keep the architecture, take normalisation from the data
        base = config_from_dataset(dataset, "ode")
        config = config.replace(input_lo=base.input_lo, input_hi=base.input_hi,
                                obs_mean=base.obs_mean, obs_std=base.obs_std, n_reset=base.n_reset)
    rng = np.random.default_rng(seed)
    gen = generator(device, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        twin = Twin(config, reset_samples_from_dataset(dataset, config.n_reset, seed)).to(device)

    steps = dataset.dynamics_inputs.shape[1]
    window = min(steps, 50) if window is None else int(window)
    ins, outs, init = chunk_long(dataset.dynamics_inputs, dataset.dynamics_outputs,
                                 dataset.dynamics_initial, max(window, 20))
    if not 1 <= window <= ins.shape[1]:
        raise ConfigError(f"window must be between 1 and the sequence length {ins.shape[1]}, "
                          f"got {window}")
    train_idx, val_idx = split_indices(len(ins), val_fraction, rng)
    win_train = Windows(twin, ins[train_idx], outs[train_idx], init[train_idx])
    win_val = Windows(twin, ins[val_idx], outs[val_idx], init[val_idx])
    val_all = torch.arange(win_val.n, device=device)
    if iters_per_epoch is None:
        iters_per_epoch = max(20, len(train_idx) // batch)

    opt = torch.optim.Adam(twin.parameters(), lr=lr)
    total = epochs * iters_per_epoch
    scale = [1.0]              # halved on divergence
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: scale[0] * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(i, total) / total))))
    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "window": window,
                               "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                               "restarts": 0}
    best, best_state = float("inf"), copy.deepcopy(twin.state_dict())
    bar = tqdm(range(epochs), desc="fit ode", disable=not progress, leave=False)
    for epoch in bar:
        losses = []
        for _ in range(iters_per_epoch):
            u, y0, target = win_train.sample(batch, window, gen)
            z = _from_embedded(twin, u, y0)
            loss = ((z - target) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.detach())   # read back once per epoch: no device sync per step
        with torch.no_grad():
            u, y0, target = win_val.window(val_all, torch.zeros_like(val_all), win_val.steps)
            val = float(((_from_embedded(twin, u, y0) - target) ** 2).mean())
        history["train_loss"].append(float(np.mean(torch.stack(losses).tolist())))
        history["val_loss"].append(val)
        if val < best:
            best, best_state = val, copy.deepcopy(twin.state_dict())
            history["best_epoch"] = epoch
        elif not np.isfinite(val) or val > 3 * best:
            # diverging rollouts: back to the best state, half the learning rate, fresh moments
            twin.load_state_dict(best_state)
            opt.state.clear()
            scale[0] *= 0.5
            history["restarts"] += 1
        bar.set_postfix(train=f"{history['train_loss'][-1]:.4f}", val=f"{val:.4f}")
    twin.load_state_dict(best_state)
    twin.eval()
    with torch.no_grad():
        target_std = float(win_val.zpad[:, win_val.n_delay + 1:].std())
    history["val_nrmse"] = float(np.sqrt(best)) / max(target_std, 1e-12)
    history["seconds"] = time.perf_counter() - t_start
    return twin, history
