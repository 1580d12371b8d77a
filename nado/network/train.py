"""Noise-aware training of the connection weights by BPTT (eq. (5)).

:func:`train_network` builds a :class:`~nado.network.model.Network` on the given
twins (frozen) and fits its weights with :func:`fit`, which also trains the
software references (:mod:`nado.network.software`). Full BPTT runs each batch
of whole sequences; truncated BPTT (``config.tbptt = K``) draws random segments
of ``burn_in + K`` steps and simulates each as one sequence from the reset, with the
burn-in's physical inputs detached (``Network.forward(grad_from=burn_in)``): the
weights get gradients through the K-step window only, and the twins' state at the
window's start is the one the rig reaches (the twin API restarts a simulation from an
observable only, re-embedding its delay state, so the burn-in is not a separate
no-grad pass; the price is back-propagating through the burn-in's twin steps). With
``config.augment = "remask"`` each epoch draws a fresh partition of every training image into
its frames (partially observable digits; on the quickstart it closes a ~10-point train/test gap,
docs/classification.md). History: ``{epoch, loss, val, lr, val_metric, best_epoch, seconds}``
(one entry per epoch; ``val`` is accuracy, or nmse for regression; ``lr`` the rate the next epoch
uses) and ``plateaus``, the epochs after which ``config.plateau_factor`` cut the learning rate.

**Resuming.** With ``config.checkpoint`` (a file path), :func:`fit` writes its whole state after
every epoch (weights, optimiser and schedule, the best weights so far, the history, and the numpy
and torch random states), atomically, and starts from that file when it exists: an interrupted
fit continues at the next epoch and ends with the very weights and history an uninterrupted one
has (a test). The file belongs to one fit (same model, data and settings); the caller removes it
when the fit's result is safe (the pipeline keeps it beside its stage cache, under the stage's key).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..device import generator, module_device, resolve_device, to_device
from ..errors import ConfigError
from ..io import save_torch_atomic
from ..twin.precision import matmul_precision, resolve_precision
from .config import TrainConfig
from .data import TaskData, as_task_data, metrics
from .model import Network
from .software import SoftwareNetwork


def train_network(twins_by_layer: Sequence, task_data: Any, config: TrainConfig | dict | None = None, *,
                  seed: int = 0) -> tuple[Network, dict]:
    """Build a network of ``twins_by_layer`` (one twin per hidden layer) and train its weights."""
    config = _config(config)
    task = as_task_data(task_data)
    if len(twins_by_layer) != len(config.nodes):
        raise ConfigError(f"network.nodes has {len(config.nodes)} layers but {len(twins_by_layer)} twins given")
    net = Network(twins_by_layer, config.nodes, task.n_inputs, task.n_outputs, pi=config.pi_specs(),
                  bias=config.bias, init_gain=config.init_gain, readout_from=config.readout_from, seed=seed)
    return net, fit(net, task, config, seed=seed)


def train_software(task_data: Any, config: TrainConfig | dict | None = None, *, kind: str = "leaky",
                   seed: int = 0, device: str | torch.device | None = "auto"
                   ) -> tuple[SoftwareNetwork, dict]:
    """Train a static or leaky-integrator MLP of shape ``config.nodes`` on the same data, on
    ``device`` (:func:`nado.device.resolve_device`)."""
    config = _config(config)
    task = as_task_data(task_data)
    net = SoftwareNetwork(task.n_inputs, config.nodes, task.n_outputs, kind=kind, seed=seed)
    net.to(resolve_device(device))
    return net, fit(net, task, config, seed=seed)


def _config(config) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)


def loss_kind(config: TrainConfig, task: TaskData) -> str:
    if config.loss != "auto":
        return config.loss
    return "ce_last" if task.kind == "classification" else "mse"


def readout_steps(config: TrainConfig, task: TaskData, T: int) -> tuple[int, int]:
    """Steps ``[lo, hi)`` the classification readout averages (last step unless ce_window)."""
    if loss_kind(config, task) == "ce_window" and config.window is not None:
        return config.window
    return (T - 1, T)


def task_loss(kind: str, out: torch.Tensor, y: torch.Tensor, steps: tuple[int, int], washout: int = 0):
    """Loss of outputs ``(B, T', C)``: cross-entropy over ``steps`` (relative) or MSE after washout."""
    if kind == "mse":
        return F.mse_loss(out[:, washout:], y[:, washout:])
    lo, hi = steps
    o = out[:, lo:hi]
    return F.cross_entropy(o.reshape(-1, o.shape[-1]), y.repeat_interleave(o.shape[1]))


def split_validation(task: TaskData, config: TrainConfig, seed: int) -> TaskData:
    """Hold out ``val_fraction`` of the training set when the task has no validation split."""
    if task.x_val is not None or config.val_fraction <= 0 or task.x_train.shape[0] < 5:
        return task
    rng = np.random.default_rng(seed)
    idx = rng.permutation(task.x_train.shape[0])
    n_val = max(1, int(round(config.val_fraction * len(idx))))
    v, t = idx[:n_val], idx[n_val:]
    from dataclasses import replace
    return replace(task, x_train=task.x_train[t], y_train=task.y_train[t],
                   x_val=task.x_train[v], y_val=task.y_train[v])


def predict(model, x: np.ndarray, *, noise: bool = True, seed: int = 0, batch_size: int = 512,
            keep_activities: bool = False) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Run ``model`` on ``x`` ``(N, T, F)`` without gradients -> outputs ``(N, T, C)`` (+ activities).

    Runs on the model's device; results come back as numpy arrays."""
    device = module_device(model)
    gen = generator(device, seed)
    outs, acts = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            r = model(to_device(x[i:i + batch_size], device), noise=noise, generator=gen)
            outs.append(r.outputs.cpu().numpy())
            if keep_activities:
                acts.append([a.cpu().numpy() for a in r.activities])
    if not keep_activities:
        return np.concatenate(outs), None
    return np.concatenate(outs), [np.concatenate([a[l] for a in acts]) for l in range(len(acts[0]))]


def evaluate(model, task: TaskData, config: TrainConfig, split: str = "test", *, noise: bool | None = None,
             seed: int = 0) -> dict[str, Any]:
    """Metric dict of ``model`` on ``split`` in simulation (noise as trained unless given)."""
    x = getattr(task, f"x_{split}")
    out, _ = predict(model, x, noise=config.noise if noise is None else noise, seed=seed,
                     batch_size=config.eval_batch)
    return metrics(task, out, split, readout_steps(config, task, x.shape[1]))


def _train_forward(model, xb: np.ndarray, xburn: np.ndarray | None, noise: bool, gen, device):
    """Outputs ``(B, T, C)`` of one training batch ``xb``, after the burn-in ``xburn`` (truncated
    BPTT) when there is one; differentiable w.r.t. the model's weights."""
    if xburn is not None and isinstance(model, Network):
        burn = xburn.shape[1]
        xs = to_device(np.concatenate([xburn, xb], axis=1), device)
        return model(xs, noise=noise, generator=gen, grad_from=burn).outputs[:, burn:]
    x0 = None
    if xburn is not None:                # software references: their state is all in last_obs
        with torch.no_grad():
            x0 = model(to_device(xburn, device), noise=noise, generator=gen).last_obs
    kw = {} if x0 is None else {"x0": x0}
    return model(to_device(xb, device), noise=noise, generator=gen, **kw).outputs


def train_step(model, opt: torch.optim.Optimizer, batch: tuple, config: TrainConfig, kind: str,
               gen: torch.Generator | None, device: torch.device, precision: str) -> torch.Tensor:
    """One optimiser step on one batch of :func:`_batches` (``(x, y, x_burn, steps, washout)``,
    numpy): the batch is copied to ``device`` (the step's only host-to-device copies), the forward
    runs with the twins' matmuls in ``precision``, then backward, gradient clipping
    (``config.clip_norm``) and ``opt.step()``. Returns the loss as a 0-d tensor on ``device``,
    detached (no device sync here; :func:`fit` averages the losses once per epoch)."""
    xb, yb, xburn, steps, wash = batch
    with matmul_precision(precision):
        out = _train_forward(model, xb, xburn, config.noise, gen, device)
    yt = to_device(yb, device, torch.float32 if kind == "mse" else torch.long)
    loss = task_loss(kind, out, yt, steps, wash)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_norm:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], config.clip_norm)
    opt.step()
    return loss.detach()


def _score(task: TaskData, m: dict) -> float:
    """Higher is better: accuracy, or -nmse."""
    return m["accuracy"] if task.kind == "classification" else -m["nmse"]


def _batches(task: TaskData, config: TrainConfig, rng: np.random.Generator, kind: str):
    """Yield ``(x, y, x_burn, steps, washout)`` tensors for one epoch."""
    x, y = task.x_train, task.y_train
    if config.augment == "remask":
        from ..tasks.digits import remask_frames
        x = remask_frames(x, rng)
    N, T = x.shape[:2]
    if config.tbptt is None:
        idx = rng.permutation(N)
        steps = readout_steps(config, task, T)
        for i in range(0, N, config.batch_size):
            b = idx[i:i + config.batch_size]
            yield x[b], y[b], None, steps, config.washout
        return
    K, burn = int(config.tbptt), int(config.burn_in)
    if burn + K > T:
        raise ConfigError(f"train.burn_in + train.tbptt = {burn + K} steps exceed the sequence length {T}")
    lo_abs, hi_abs = readout_steps(config, task, T) if kind != "mse" else (0, T)
    # segment windows [s+burn, s+burn+K) must overlap the loss steps [lo_abs, hi_abs)
    starts = np.arange(0, T - burn - K + 1)
    starts = starts[(starts + burn + K > lo_abs) & (starts + burn < hi_abs)]
    if starts.size == 0:
        raise ConfigError("no truncated-BPTT segment overlaps the loss window; shorten burn_in or widen window")
    n_seg = int(config.segments_per_epoch)
    for i in range(0, n_seg, config.batch_size):
        m = min(config.batch_size, n_seg - i)
        seq = rng.integers(0, N, m)
        # regression: a random start per segment; classification: one start per batch, so the
        # loss steps (fixed absolute steps of the sequence) sit at the same place in every segment
        st = rng.choice(starts, m) if kind == "mse" else np.full(m, rng.choice(starts))
        grid = st[:, None] + np.arange(burn + K)[None, :]
        xs = x[seq[:, None], grid]
        if kind == "mse":
            ys = y[seq[:, None], grid[:, burn:]]
            wash = max(0, config.washout - int(st.min()) - burn)
            yield xs[:, burn:], ys, xs[:, :burn] if burn else None, None, min(wash, K - 1)
        else:
            # the loss steps inside this window, relative to it
            lo = max(lo_abs - (int(st[0]) + burn), 0)
            hi = min(hi_abs - (int(st[0]) + burn), K)
            if hi <= lo:
                continue
            yield xs[:, burn:], y[seq], xs[:, :burn] if burn else None, (lo, hi), 0


def _init_readout_bias(model, y: np.ndarray) -> None:
    """Start a regression readout at the target mean (so training fits the variations)."""
    bias = model.biases[-1] if isinstance(model, Network) and model.biases is not None else \
        getattr(getattr(model, "out", None), "bias", None)
    if bias is not None:
        with torch.no_grad():
            bias.copy_(torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(-1, y.shape[-1]).mean(0),
                                       dtype=bias.dtype))


def fit(model, task_data: Any, config: TrainConfig | dict | None = None, *, seed: int = 0,
        init_readout: bool = True) -> dict:
    """Train ``model``'s trainable parameters with Adam on the model's device (batches are copied
    there as they are drawn, see :func:`nado.device.to_device`); return the history dict.

    ``init_readout=False`` keeps a regression readout's bias (fine-tuning trained weights)."""
    config = _config(config)
    task = split_validation(as_task_data(task_data), config, seed)
    if config.max_train is not None and task.x_train.shape[0] > config.max_train:
        from dataclasses import replace
        task = replace(task, x_train=task.x_train[:config.max_train], y_train=task.y_train[:config.max_train])
    kind = loss_kind(config, task)
    if (kind == "mse") != (task.kind == "regression"):
        raise ConfigError(f"loss {kind!r} does not fit a {task.kind} task")
    torch.manual_seed(int(seed))
    rng = np.random.default_rng(seed)
    device = module_device(model)
    gen = generator(device, int(seed) + 1)
    if task.kind == "regression" and init_readout:
        _init_readout_bias(model, task.y_train)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs) if config.schedule == "cosine"
             else torch.optim.lr_scheduler.StepLR(opt, config.step_size, config.gamma)
             if config.schedule == "step" else None)
    hist: dict[str, Any] = {"epoch": [], "loss": [], "val": [], "lr": [],
                            "val_metric": "accuracy" if task.kind == "classification" else "nmse",
                            "best_epoch": None, "loss_kind": kind,
                            "precision": resolve_precision(config.precision, device), "plateaus": []}
    best, best_state, since, start, spent = -np.inf, None, 0, 0, 0.0
    lowest_loss = np.inf
    resume = Path(config.checkpoint) if config.checkpoint else None
    if resume is not None and resume.is_file():
        st = torch.load(resume, map_location=device, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        if sched is not None:
            sched.load_state_dict(st["sched"])
        rng.bit_generator.state = st["rng"]
        gen.set_state(st["gen"].cpu())                  # generator states are CPU byte tensors
        torch.set_rng_state(st["torch_rng"].cpu())
        hist, best, best_state, since = st["hist"], st["best"], st["best_state"], st["since"]
        start, spent = st["epoch"] + 1, st["seconds"]
        lowest_loss = st.get("lowest_loss", np.inf)
        if config.patience is not None and since >= config.patience:
            start = config.epochs                        # it had stopped early: nothing left to run
        hist.setdefault("resumed_at", []).append(start)
        hist.setdefault("precision", resolve_precision(config.precision, device))  # older checkpoints
    t0 = time.perf_counter() - spent
    bar = tqdm(range(start, config.epochs), desc="train", disable=not config.progress, leave=False,
               initial=start, total=config.epochs)
    for epoch in bar:
        model.train()
        losses = []
        for batch in _batches(task, config, rng, kind):
            losses.append(train_step(model, opt, batch, config, kind, gen, device, hist["precision"]))
        if sched is not None:
            sched.step()
        model.eval()
        val = evaluate(model, task, config, "val" if task.x_val is not None else "train", seed=seed + 7)
        score = _score(task, val)
        hist["epoch"].append(epoch)
        hist["loss"].append(float(torch.stack(losses).mean()) if losses else float("nan"))
        if config.plateau_factor is not None and hist["loss"][-1] >= lowest_loss:
            for group in opt.param_groups:           # the schedules are chainable: the cut persists
                group["lr"] *= config.plateau_factor
            hist.setdefault("plateaus", []).append(epoch)
        lowest_loss = min(lowest_loss, hist["loss"][-1])
        hist["val"].append(float(val[hist["val_metric"]]))
        hist["lr"].append(float(opt.param_groups[0]["lr"]))
        bar.set_postfix(loss=f"{hist['loss'][-1]:.4g}", val=f"{hist['val'][-1]:.4g}")
        if score > best:
            best, since, hist["best_epoch"] = score, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
        if resume is not None:
            save_torch_atomic(resume, {"epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(),
                                       "sched": None if sched is None else sched.state_dict(),
                                       "rng": rng.bit_generator.state, "gen": gen.get_state(),
                                       "torch_rng": torch.get_rng_state(), "hist": hist, "best": float(best),
                                       "best_state": best_state, "since": since, "lowest_loss": lowest_loss,
                                       "seconds": time.perf_counter() - t0})
        if config.patience is not None and since >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    hist["seconds"] = time.perf_counter() - t0
    return hist
