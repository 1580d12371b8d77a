"""Dynamical physics-aware training (PAT) over the bus: forward on the rigs, backward through the twins.

PAT (Wright, Onodera et al., "Deep physical neural networks trained with backpropagation",
Nature 601, 549-555 (2022); reference code github.com/mcmahon-lab/Physics-Aware-Training,
``pat_utils.custom_autodiff_function``) trains a physical network by backpropagation whose
forward pass is the *measured* physical system and whose backward pass is the vector-Jacobian
product of a differentiable digital model evaluated at the same inputs. Here the physical
layers have memory, so "the same inputs" are whole input sequences, and the digital model is a
twin run along them from the *measured* initial state. Each training step, for each hidden
layer ``l`` (layer by layer, so layer ``l``'s inputs come from layer ``l - 1``'s measured
activities)::

    S_l    = h_l(theta_l z_{l-1} + b_l)                       # (B, T, n_l, n_in), differentiable
    y_rig  = drive(S_l as (B*n_l, T, n_in))                   # ONE batched drive through the bus
    y_twin = twin_l.simulate(S_l, x0 = measured initial)      # same inputs, same start
    y      = y_twin + (y_rig - y_twin).detach()               # value: y_rig; gradient: d y_twin / d S_l
    z_l    = pi_l(y, measured initial)

which is the reference code's custom autograd function written as a straight-through sum (the
value is the measurement, the backward pass is the twin's vjp at the measured inputs). Loss,
optimiser, batches, truncated BPTT, validation and early stopping are those of
:func:`nado.network.train.fit`: :class:`RigLoopNetwork` is a :class:`~nado.network.model.Network`
whose forward pass drives rigs, so ``fit`` trains it unchanged. Validation (and model
selection) is measured on the rigs too, and counted.

Options (:class:`PatOptions`): ``epochs``, ``lr`` (None = the config's), ``backward``
(``"sde"`` or ``"ode"``: which twin supplies the Jacobian), ``backward_noise`` (run the SDE
twin with its noise in the backward pass; default off: the drift's Jacobian), ``max_batch``
(experiments per drive: splits each layer's drive for rigs with a batch limit), ``batch_size``
(sequences per PAT step, i.e. per drive; None = the config's), ``keep_start`` (a fine-tune
keeps its starting weights when no PAT epoch beats them on the measured validation set),
``max_train`` (train on the first N training sequences only: each epoch drives N * nodes
experiments per layer, so this sets the instrument time of an epoch) and ``val_fraction`` (the
measured validation set; each evaluation drives it once).

Entry points (plain data in and out):

- :func:`pat_train` ``(network | None, twins, clients_by_layer, task, config, options, *, seed)
  -> (Network, info)``: PAT from the given weights (``pat_finetune``) or from random weights
  (``pat``). ``info``: ``{history, instrument_s: {train, validate, total}, drives, start_val}``.
- :func:`pat_diagnostics`: on one batch, the cosine between the PAT gradient and the
  twin-only gradient, between two PAT gradients whose drives differ only in their noise seed
  (the noise of the measured forward pass), and the twin's forward mismatch along the measured
  inputs (normalised RMS per layer) - the measurements behind a missed target.

Works with any rig client (``describe()``/``drive()``), a ``bridge.pool.RigPool`` included
(every drive here is ``reset=True`` with a seed). Inputs are clipped to the rig's declared input
range (``describe()['input']``); ``h`` keeps them inside the twin's active range already.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from ..device import generator, module_device, to_device
from ..errors import ConfigError
from .config import TrainConfig
from .data import as_task_data
from .model import Network, NetworkOutput
from .train import _config, evaluate, fit, loss_kind, readout_steps, split_validation, task_loss


@dataclass(frozen=True)
class PatOptions:
    """Settings of a PAT run; see the module docstring."""

    epochs: int = 3
    lr: float | None = None
    backward: str = "sde"
    backward_noise: bool = False
    max_batch: int | None = None
    batch_size: int | None = None
    keep_start: bool = True
    max_train: int | None = None
    val_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"pat.epochs must be >= 1, got {self.epochs}")
        if self.backward not in ("sde", "ode"):
            raise ConfigError(f"pat.backward must be 'sde' or 'ode' (the twin of the backward pass), "
                              f"got {self.backward!r}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"pat.lr must be > 0, got {self.lr}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"pat.max_batch must be >= 1 experiments per drive, got {self.max_batch}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"pat.batch_size must be >= 1, got {self.batch_size}")
        if self.max_train is not None and self.max_train < 1:
            raise ConfigError(f"pat.max_train must be >= 1 training sequences, got {self.max_train}")
        if self.val_fraction is not None and not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"pat.val_fraction must be in (0, 1), got {self.val_fraction}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "PatOptions":
        d = dict(d or {})
        names = set(cls.__dataclass_fields__)
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown pat key(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


def rig_range(client) -> tuple[float, float]:
    """The rig's declared safe input range ``(min, max)`` (its ``describe()['input']``)."""
    d = client.describe()
    return float(d["input"]["min"]), float(d["input"]["max"])


class RigLoopNetwork(Network):
    """A :class:`Network` whose forward pass drives rigs (see the module docstring).

    ``twins``: the backward pass's twin per layer; ``clients_by_layer``: one rig client per layer.
    Counters: ``instrument_s`` / ``drives`` split into ``"train"`` (forward passes with gradients)
    and ``"validate"`` (without). Drive seeds are ``seed + k`` for the k-th drive of this object.
    """

    def __init__(self, twins: Sequence, clients_by_layer: Sequence, n_nodes, n_inputs, n_outputs, *,
                 backward_noise: bool = False, max_batch: int | None = None, seed: int = 0, **kw) -> None:
        super().__init__(twins, n_nodes, n_inputs, n_outputs, seed=seed, **kw)
        if len(clients_by_layer) != self.n_layers:
            raise ConfigError(f"need one rig client per hidden layer ({self.n_layers}), "
                              f"got {len(clients_by_layer)}")
        self.clients = list(clients_by_layer)
        self.ranges = []
        for l, c in enumerate(self.clients):
            d = c.describe()
            n_in, n_out = int(d["input"]["dims"][0]), int(d["output"]["dims"][0])
            if n_in != self.maps[l].n_in or n_out != self.maps[l].n_obs:
                raise ConfigError(f"layer {l + 1}: rig '{d.get('name')}' takes {n_in} input(s) and gives "
                                  f"{n_out} output(s), but the layer's twin has n_in={self.maps[l].n_in}, "
                                  f"n_obs={self.maps[l].n_obs}; map the layer to a rig of its twin's kind")
            self.ranges.append((float(d["input"]["min"]), float(d["input"]["max"])))
        self.backward_noise = bool(backward_noise)
        self.max_batch = max_batch
        self._seed = int(seed) * 7919 + 17
        self._count = 0
        self.instrument_s = {"train": 0.0, "validate": 0.0}
        self.drives = {"train": 0, "validate": 0}

    def drive_layer(self, l: int, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drive layer ``l``'s rig with ``flat`` ``(M, T, n_in)`` (clipped to its range), in chunks of
        ``max_batch``; returns ``(outputs (M, T, n_obs), initial (M, n_obs))`` float64."""
        lo, hi = self.ranges[l]
        flat = np.clip(np.asarray(flat, dtype=np.float64), lo, hi)
        step = flat.shape[0] if not self.max_batch else int(self.max_batch)
        key = "train" if torch.is_grad_enabled() else "validate"
        outs, inits = [], []
        for i in range(0, flat.shape[0], step):
            r = self.clients[l].drive(flat[i:i + step], reset=True, seed=self._seed + self._count)
            self._count += 1
            outs.append(np.asarray(r.outputs, dtype=np.float64))
            inits.append(np.asarray(r.initial, dtype=np.float64))
            self.instrument_s[key] += float(r.instrument_s)
            self.drives[key] += 1
        return np.concatenate(outs), np.concatenate(inits)

    def forward(self, x: torch.Tensor, *, noise: bool = True, generator: torch.Generator | None = None,
                x0=None, grad_from: int = 0) -> NetworkOutput:
        """Measured forward pass (rigs), twin backward pass; ``noise`` is ignored (the rig has its own),
        ``x0`` is refused (a rig starts from its reset), ``grad_from`` as in :meth:`Network.forward`."""
        if x0 is not None:
            raise ConfigError("a rig-in-the-loop network starts every drive from the rig's reset; "
                              "x0 cannot be given")
        if x.ndim != 3 or x.shape[-1] != self.n_inputs:
            raise ConfigError(f"network input must be (B, T, {self.n_inputs}), got {tuple(x.shape)}")
        B, T = x.shape[:2]
        z = x.to(self.weights[0].dtype)
        k = max(0, min(int(grad_from), T))
        acts, lasts, ins = [], [], []
        for l, twin in enumerate(self.twins):
            s = self.layer_inputs(l, z)
            if 0 < k and s.requires_grad:
                s = torch.cat([s[:, :k].detach(), s[:, k:]], dim=1)
            flat = s.permute(0, 2, 1, 3).reshape(B * self.n_nodes[l], T, -1)
            out, init = self.drive_layer(l, flat.detach().cpu().double().numpy())
            y_rig = torch.as_tensor(out, dtype=flat.dtype, device=flat.device)
            init_t = torch.as_tensor(init, dtype=flat.dtype, device=flat.device)
            if flat.requires_grad:
                y_twin = twin.simulate(flat, init_t, noise=self.backward_noise, generator=generator)
                y = y_twin + (y_rig - y_twin).detach()
            else:
                y = y_rig
            z = self.layer_activities(l, y, init_t, B)
            acts.append(z)
            lasts.append(y_rig[:, -1])
            ins.append(s)
        return NetworkOutput(self.readout(self.readout_input(acts)), acts, lasts, ins)


def _rig_loop(network: Network | None, twins: Sequence, clients_by_layer: Sequence, task, config: TrainConfig,
              options: PatOptions, seed: int) -> RigLoopNetwork:
    net = RigLoopNetwork(twins, clients_by_layer, config.nodes, task.n_inputs, task.n_outputs,
                         pi=config.pi_specs(), bias=config.bias, init_gain=config.init_gain,
                         readout_from=config.readout_from, seed=seed,
                         backward_noise=options.backward_noise, max_batch=options.max_batch)
    if network is not None:
        if list(network.n_nodes) != list(net.n_nodes):
            raise ConfigError(f"the network to fine-tune has nodes {network.n_nodes}, the config "
                              f"{list(config.nodes)}")
        # weights, biases and the maps' constants (h range, pi normalisation) of the trained network
        net.load_state_dict(network.state_dict())
    return net


def pat_train(network: Network | None, twins: Sequence, clients_by_layer: Sequence, task_data: Any,
              config: TrainConfig | dict | None = None, options: PatOptions | dict | None = None, *,
              seed: int = 0) -> tuple[Network, dict[str, Any]]:
    """Physics-aware training (see the module docstring); returns ``(network of twins, info)``.

    ``network``: start from its weights (fine-tuning), or None for random weights (seeded like
    :func:`nado.network.train.train_network`). ``twins``: the backward pass's twin per layer; the
    returned :class:`Network` is built on them (evaluate it in simulation or transfer it as any
    network). info: ``{history, instrument_s: {train, validate, total}, drives: {train, validate},
    start_val, kept_start, options}``.
    """
    config = _config(config)
    options = options if isinstance(options, PatOptions) else PatOptions.from_dict(options)
    task = as_task_data(task_data)
    if len(twins) != len(config.nodes):
        raise ConfigError(f"network.nodes has {len(config.nodes)} layers but {len(twins)} twins given")
    cfg = replace(config, epochs=options.epochs, lr=options.lr or config.lr,
                  batch_size=options.batch_size or config.batch_size,
                  max_train=options.max_train or config.max_train,
                  val_fraction=options.val_fraction or config.val_fraction)
    task = split_validation(task, cfg, seed)      # fixed here, so the start is scored on the same set
    net = _rig_loop(network, twins, clients_by_layer, task, cfg, options, seed)
    start_val = None
    if network is not None and options.keep_start:
        net.eval()
        start_val = evaluate(net, task, cfg, "val" if task.x_val is not None else "train", seed=seed + 7)
    hist = fit(net, task, cfg, seed=seed, init_readout=network is None)
    kept_start = False
    if start_val is not None and hist["best_epoch"] is not None:
        best = hist["val"][hist["best_epoch"]]
        start = float(start_val[hist["val_metric"]])
        if (start > best) if task.kind == "classification" else (start < best):
            net.load_state_dict(network.state_dict())
            kept_start = True
    out = Network(list(twins), cfg.nodes, task.n_inputs, task.n_outputs, pi=cfg.pi_specs(), bias=cfg.bias,
                  init_gain=cfg.init_gain, readout_from=cfg.readout_from, seed=seed)
    out.load_state_dict(net.state_dict())
    inst = dict(net.instrument_s)
    inst["total"] = inst["train"] + inst["validate"]
    return out, {"history": hist, "instrument_s": inst, "drives": dict(net.drives),
                 "start_val": start_val, "kept_start": kept_start,
                 "options": {k: getattr(options, k) for k in options.__dataclass_fields__}}


def _grad(net: Network, x: torch.Tensor, y: torch.Tensor, kind: str, steps, washout: int, *,
          noise: bool, gen: torch.Generator) -> torch.Tensor:
    net.zero_grad(set_to_none=True)
    out = net(x, noise=noise, generator=gen).outputs
    task_loss(kind, out, y, steps, washout).backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in net.parameters() if p.requires_grad])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def pat_diagnostics(network: Network, twins: Sequence, clients_by_layer: Sequence, task_data: Any,
                    config: TrainConfig | dict | None = None, *, batch: int = 64, backward_noise: bool = False,
                    seed: int = 0) -> dict[str, Any]:
    """Why PAT helps or not, measured on one training batch of ``batch`` sequences.

    Returns ``{cos_pat_twin, cos_pat_pat, cos_twin_twin, forward_nrmse, rig_repeat_nrmse,
    rig_slope, instrument_s}``: cosine between the PAT gradient and the twin-only gradient (twins
    with their noise, as NADO trains); between two PAT gradients that differ only in the drives'
    noise seeds (1 = a noise-free measured forward pass); between two twin-only gradients with
    different noise draws (the twin's own gradient noise, for scale); per layer, the RMS of
    (twin - rig) activities along the same measured inputs divided by the rig activities' std; per
    layer, the same for two measurements of identical inputs (the rig's own repeatability).

    ``rig_slope``: does a step along each gradient lower the loss *measured on the rigs*? For
    ``d`` in the PAT gradient, the twin-only gradient and a random direction (a control, seeded),
    the central difference ``(L(w + e u) - L(w - e u)) / (2 e)`` along ``u = d / |d|`` of the
    measured batch loss, both sides driven with the same drive seeds (common random numbers: on an
    emulated rig the same noise draws), over ``|d|``: 1 = the gradient's own slope is the rig's,
    0 = orthogonal to the rig's gradient, < 0 = uphill on the rig. ``e = 1e-3 sqrt(P)`` for the
    network's P weights: one Adam step at lr 1e-3, the size of a fine-tune step.
    """
    config = _config(config)
    task = as_task_data(task_data)
    kind = loss_kind(config, task)
    rng = np.random.default_rng(seed)
    idx = rng.choice(task.x_train.shape[0], min(batch, task.x_train.shape[0]), replace=False)
    dev = module_device(network)
    x = to_device(task.x_train[idx], dev)
    y = to_device(task.y_train[idx], dev, torch.float32 if kind == "mse" else torch.long)
    steps = readout_steps(config, task, x.shape[1])
    wash = config.washout if kind == "mse" else 0
    opts = PatOptions(backward_noise=backward_noise)
    loops = [_rig_loop(network, twins, clients_by_layer, task, config, opts, seed + 1000 * i) for i in range(2)]
    g_pat = [_grad(n, x, y, kind, steps, wash, noise=False, gen=generator(dev, seed)) for n in loops]
    twin_net = copy.deepcopy(network)
    g_twin = [_grad(twin_net, x, y, kind, steps, wash, noise=config.noise,
                    gen=generator(dev, seed + 1 + i)) for i in range(2)]
    fwd, rep = [], []
    with torch.no_grad():
        z = x
        for l, twin in enumerate(twins):
            s = loops[0].layer_inputs(l, z)
            B, T = s.shape[:2]
            flat = s.permute(0, 2, 1, 3).reshape(B * loops[0].n_nodes[l], T, -1)
            out_a, init_a = loops[0].drive_layer(l, flat.double().cpu().numpy())
            out_b, init_b = loops[1].drive_layer(l, flat.double().cpu().numpy())
            ia = to_device(init_a, dev)
            za = loops[0].layer_activities(l, to_device(out_a, dev), ia, B)
            zb = loops[0].layer_activities(l, to_device(out_b, dev), to_device(init_b, dev), B)
            zt = loops[0].layer_activities(l, twin.simulate(flat, ia, noise=False), ia, B)
            sd = float(za.std()) or 1.0
            fwd.append(float(((zt - za) ** 2).mean().sqrt()) / sd)
            rep.append(float(((zb - za) ** 2).mean().sqrt()) / sd)
            z = za
    dirs = {"pat": g_pat[0], "twin": g_twin[0],
            "random": torch.randn(g_pat[0].shape, generator=generator(dev, seed + 99), device=dev)}
    slope = {k: _rig_slope(loops[0], x, y, kind, steps, wash, d) for k, d in dirs.items()}
    inst = sum(n.instrument_s["train"] + n.instrument_s["validate"] for n in loops)
    return {"cos_pat_twin": _cos(g_pat[0], g_twin[0]), "cos_pat_pat": _cos(g_pat[0], g_pat[1]),
            "cos_twin_twin": _cos(g_twin[0], g_twin[1]), "forward_nrmse": fwd, "rig_repeat_nrmse": rep,
            "rig_slope": slope, "batch": int(len(idx)), "instrument_s": float(inst)}


def _rig_slope(loop: RigLoopNetwork, x: torch.Tensor, y: torch.Tensor, kind: str, steps, washout: int,
               d: torch.Tensor) -> float:
    """Measured central-difference slope of the batch loss along ``d``, over ``|d|`` (see
    :func:`pat_diagnostics`); both sides reuse the same drive seeds."""
    params = [p for p in loop.parameters() if p.requires_grad]
    w0 = [p.detach().clone() for p in params]
    n_w = sum(p.numel() for p in params)
    eps = 1e-3 * float(np.sqrt(n_w))
    norm = float(d.norm()) or 1.0
    u = d / norm
    count = loop._count
    losses = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            i = 0
            for p, w in zip(params, w0):
                p.copy_(w + sign * eps * u[i:i + p.numel()].view_as(p))
                i += p.numel()
            loop._count = count                     # the same drive seeds on both sides
            losses.append(float(task_loss(kind, loop(x).outputs, y, steps, washout)))
        for p, w in zip(params, w0):
            p.copy_(w)
    return (losses[0] - losses[1]) / (2 * eps) / norm
