"""Twins refined where the network operates: collect where the trained network drives, refit, retrain.

NADO's twins are fitted on uniform random inputs; a trained network sends each layer something
else (inputs held near one value, ends of the active range; see :mod:`nado.data.supplement`).
:func:`refine` closes the loop, for ``rounds`` rounds:

1. **collect** ``source="network"``: drive the network on the rigs, layer by layer, for a random
   sample of *training* inputs (layer ``l``'s inputs computed from layer ``l - 1``'s measured
   activities, as in :func:`nado.network.transfer.transfer`) and keep every layer's drive -
   inputs ``(M, T, n_in)``, outputs, initial states - as new data for that layer's twin: the
   input distribution each layer actually receives. ``source="uniform"``: the same number of
   sequences of the same length per layer, in the same drives, uniform over the twin's active
   range - the control that spends the same instrument time on more of NADO's own data. Every
   input is clipped to the rig's declared range (``describe()['input']``) before it is driven.
2. **refit**: each twin's drift ``f`` is fine-tuned (:func:`finetune_twin`, multiple shooting on
   the union of its original training data and everything collected so far; noise parameters of
   an SDE twin unchanged). Layers that share a twin object share its data and its refit.
3. **retrain**: the network's weights are fine-tuned through the refined twins
   (:func:`nado.network.train.fit` from the current weights, ``retrain_epochs``).
4. **transfer**: the test split on the rigs (:func:`nado.network.transfer.transfer_metrics`).

Inputs and outputs are plain data: twins, rig clients (``describe``/``drive``; pools work, every
drive is ``reset=True`` with a seed), :class:`~nado.network.data.TaskData`, per-layer base data
(a :class:`nado.data.dataset.Dataset` or a dict with ``dynamics_inputs``, ``dynamics_outputs``,
``dynamics_initial``). :func:`refine` returns ``(network, info)`` with ``info["rounds"]`` (per
round: ``sim``, ``transfer``, ``instrument_s`` by stage, collected sequences per twin, and
``twin_nrmse_new_data``: each twin's :func:`twin_error` on the round's new data before its
refit - out of sample - and after) and
``info["instrument_s"] = {collect, transfer, total}`` summed over rounds (rig-reported).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from ..device import generator, module_device, to_device
from ..errors import ConfigError
from .config import TrainConfig
from .data import as_task_data
from .model import Network
from .train import _config, fit
from .transfer import transfer_metrics


@dataclass(frozen=True)
class RefineOptions:
    """``rounds`` k; ``sequences``: training samples driven per round (each gives ``n_nodes[l]``
    sequences to layer ``l``'s twin); ``source``: ``network`` | ``uniform``; twin refit:
    ``twin_epochs`` x ``twin_iters`` steps of ``twin_batch`` windows of ``window`` steps at
    ``twin_lr``; network retrain: ``retrain_epochs`` at ``retrain_lr`` (None = the config's lr / 2);
    ``max_batch``: experiments per drive (None = one drive per layer)."""

    rounds: int = 2
    sequences: int = 64
    source: str = "network"
    twin_epochs: int = 8
    twin_iters: int = 20
    twin_batch: int = 256
    twin_lr: float = 2e-3
    window: int | None = None
    retrain_epochs: int = 5
    retrain_lr: float | None = None
    max_batch: int | None = None

    def __post_init__(self) -> None:
        if self.source not in ("network", "uniform"):
            raise ConfigError(f"refine.source must be 'network' or 'uniform', got {self.source!r}")
        for k in ("rounds", "sequences", "twin_epochs", "twin_iters", "twin_batch", "retrain_epochs"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"refine.{k} must be >= 1, got {getattr(self, k)}")
        if self.twin_lr <= 0 or (self.retrain_lr is not None and self.retrain_lr <= 0):
            raise ConfigError("refine.twin_lr and refine.retrain_lr must be > 0")
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"refine.max_batch must be >= 1 experiments per drive, got {self.max_batch}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RefineOptions":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown refine key(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


def drive_clipped(client, inputs: np.ndarray, *, seed: int, max_batch: int | None = None) -> dict[str, Any]:
    """Drive ``inputs`` ``(M, T, n_in)`` (each after a reset), clipped to the rig's declared range.

    Returns ``{inputs (as driven), outputs (M, T, n_out), initial (M, n_out), instrument_s, drives}``.
    """
    d = client.describe()
    lo, hi = float(d["input"]["min"]), float(d["input"]["max"])
    x = np.clip(np.asarray(inputs, dtype=np.float64), lo, hi)
    step = x.shape[0] if not max_batch else int(max_batch)
    outs, inits, inst, n = [], [], 0.0, 0
    for i in range(0, x.shape[0], step):
        r = client.drive(x[i:i + step], reset=True, seed=int(seed) + n)
        outs.append(np.asarray(r.outputs, dtype=np.float64))
        inits.append(np.asarray(r.initial, dtype=np.float64))
        inst += float(r.instrument_s)
        n += 1
    return {"inputs": x, "outputs": np.concatenate(outs), "initial": np.concatenate(inits),
            "instrument_s": inst, "drives": n}


def collect_network_inputs(network: Network, clients_by_layer: Sequence, x: np.ndarray, *, seed: int,
                           max_batch: int | None = None) -> list[dict[str, Any]]:
    """Drive ``network`` on the rigs for task inputs ``x`` ``(N, T, F)``, layer by layer; per layer the
    drive's ``{inputs (N*n_l, T, n_in), outputs, initial, instrument_s, drives}``."""
    z = np.asarray(x, dtype=np.float32)
    dev = module_device(network)
    out = []
    for l in range(network.n_layers):
        N, T = z.shape[:2]
        with torch.no_grad():
            s = network.layer_inputs(l, to_device(z, dev)).double().cpu().numpy()
        flat = s.transpose(0, 2, 1, 3).reshape(N * network.n_nodes[l], T, -1)
        rec = drive_clipped(clients_by_layer[l], flat, seed=seed + 1000003 * l, max_batch=max_batch)
        with torch.no_grad():
            z = network.layer_activities(l, to_device(rec["outputs"], dev), to_device(rec["initial"], dev),
                                         N).cpu().numpy()
        out.append(rec)
    return out


def collect_uniform(network: Network, clients_by_layer: Sequence, n: int, T: int, *, seed: int,
                    max_batch: int | None = None) -> list[dict[str, Any]]:
    """The control: per layer ``n * n_nodes[l]`` sequences of ``T`` steps, uniform over the layer's
    active range (the twin's, i.e. ``h``'s), in the same drives as :func:`collect_network_inputs`."""
    rng = np.random.default_rng(seed)
    out = []
    for l in range(network.n_layers):
        m = network.maps[l]
        lo, hi = m.lo.double().cpu().numpy(), m.hi.double().cpu().numpy()
        u = lo + (hi - lo) * rng.random((n * network.n_nodes[l], T, m.n_in))
        out.append(drive_clipped(clients_by_layer[l], u, seed=seed + 1000003 * l, max_batch=max_batch))
    return out


def _arrays(data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    get = data.get if isinstance(data, dict) else (lambda k: getattr(data, k))
    return (np.asarray(get("dynamics_inputs")), np.asarray(get("dynamics_outputs")),
            np.asarray(get("dynamics_initial")))


def finetune_twin(twin, sources: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *, epochs: int = 8,
                  iters: int = 20, batch: int = 256, lr: float = 2e-3, window: int | None = None,
                  seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A copy of ``twin`` whose drift ``f`` is fine-tuned on ``sources`` (each ``(inputs (N, T, n_in),
    outputs (N, T, n_obs), initial (N, n_obs))``, physical units; lengths may differ).

    Loss: normalised MSE of deterministic rollouts over windows of ``min(window, T)`` steps (the
    ODE fit's multiple shooting), each batch drawn from the sources in proportion to their
    sequence counts. Other parameters (an SDE twin's noise) and the normalisation constants stay.
    Returns ``(twin, {loss: [per epoch], seconds})``.
    """
    from ..twin.data import Windows
    from ..twin.integrate import integrate
    import time
    t0 = time.perf_counter()
    new = copy.deepcopy(twin)
    for p in new.parameters():
        p.requires_grad_(False)
    params = list(new.f.parameters())
    for p in params:
        p.requires_grad_(True)
    wins = [Windows(new, *src) for src in sources if len(src[0])]
    if not wins:
        raise ConfigError("finetune_twin needs at least one non-empty source of sequences")
    counts = np.array([w.n for w in wins], dtype=float)
    share = np.maximum(1, np.round(batch * counts / counts.sum())).astype(int)
    gen = generator(module_device(new), seed)          # windows are drawn where the data live
    opt = torch.optim.Adam(params, lr=lr)
    c = new.config
    hist: dict[str, Any] = {"loss": []}
    with torch.enable_grad():
        for _ in range(int(epochs)):
            losses = []
            for _ in range(int(iters)):
                loss = 0.0
                for w, b in zip(wins, share):
                    W = min(int(window or 50), w.steps)
                    u, y0, target = w.sample(int(b), W, gen)
                    z = integrate(new.packed(False), u, y0, method=c.method, substeps=c.substeps, dw=None)
                    loss = loss + ((z - target) ** 2).mean() * (b / share.sum())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                losses.append(loss.detach())      # read back once per epoch (no sync per step)
            hist["loss"].append(float(np.mean(torch.stack(losses).tolist())))
    for p in params:
        p.requires_grad_(False)
    new.eval()
    hist["seconds"] = time.perf_counter() - t0
    return new, hist


def twin_error(twin, inputs: np.ndarray, outputs: np.ndarray, initial: np.ndarray) -> float:
    """RMS of (deterministic twin path - measured outputs) over the outputs' std (a normalised RMSE;
    the rig's own noise sets its floor). Shapes as in :func:`finetune_twin`."""
    dev = module_device(twin)
    with torch.no_grad():
        y = twin.simulate(to_device(inputs, dev), to_device(initial, dev), noise=False).double().cpu().numpy()
    o = np.asarray(outputs, dtype=np.float64)
    return float(np.sqrt(np.mean((y - o) ** 2)) / (o.std() or 1.0))


def refine(network: Network, clients_by_layer: Sequence, task_data: Any, config: TrainConfig | dict | None,
           base_data: Sequence, options: RefineOptions | dict | None = None, *, seed: int = 0
           ) -> tuple[Network, dict[str, Any]]:
    """``options.rounds`` rounds of collect / refit / retrain / transfer (module docstring).

    ``network``: trained on its twins (``network.twins``); ``base_data[l]``: the data layer ``l``'s
    twin was fitted on (layers sharing a twin may repeat it; it is used once).
    """
    config = _config(config)
    opts = options if isinstance(options, RefineOptions) else RefineOptions.from_dict(options)
    task = as_task_data(task_data)
    if len(clients_by_layer) != network.n_layers or len(base_data) != network.n_layers:
        raise ConfigError(f"refine needs one rig client and one base dataset per hidden layer "
                          f"({network.n_layers}); got {len(clients_by_layer)} and {len(base_data)}")
    # twins shared by several layers are refined once, on the data of all of them
    owner: dict[int, int] = {}
    groups: list[list[int]] = []
    for l, t in enumerate(network.twins):
        if id(t) not in owner:
            owner[id(t)] = len(groups)
            groups.append([])
        groups[owner[id(t)]].append(l)
    twins = [network.twins[g[0]] for g in groups]
    base = [_arrays(base_data[g[0]]) for g in groups]
    new_data: list[list[tuple]] = [[] for _ in groups]
    net = network
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {"rounds": [], "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
                            "instrument_s": {"collect": 0.0, "transfer": 0.0, "total": 0.0}}
    T = task.x_train.shape[1]
    for r in range(opts.rounds):
        rseed = int(seed) * 1000 + 97 * (r + 1)
        if opts.source == "network":
            idx = rng.choice(task.x_train.shape[0], min(opts.sequences, task.x_train.shape[0]), replace=False)
            recs = collect_network_inputs(net, clients_by_layer, task.x_train[idx], seed=rseed,
                                          max_batch=opts.max_batch)
        else:
            recs = collect_uniform(net, clients_by_layer, min(opts.sequences, task.x_train.shape[0]), T,
                                   seed=rseed, max_batch=opts.max_batch)
        inst_collect = float(sum(rec["instrument_s"] for rec in recs))
        for l, rec in enumerate(recs):
            new_data[owner[id(network.twins[l])]].append((rec["inputs"], rec["outputs"], rec["initial"]))
        fresh = [[(rec["inputs"], rec["outputs"], rec["initial"]) for l, rec in enumerate(recs)
                  if owner[id(network.twins[l])] == g] for g in range(len(twins))]
        err_before = [float(np.mean([twin_error(twins[g], *d) for d in fresh[g]])) for g in range(len(twins))]
        refits = []
        for g, twin in enumerate(twins):
            twins[g], h = finetune_twin(twin, [base[g]] + new_data[g], epochs=opts.twin_epochs,
                                        iters=opts.twin_iters, batch=opts.twin_batch, lr=opts.twin_lr,
                                        window=opts.window, seed=rseed + g)
            refits.append(h)
        layer_twins = [twins[owner[id(t)]] for t in network.twins]
        new_net = Network(layer_twins, net.n_nodes, net.n_inputs, net.n_outputs, pi=config.pi_specs(),
                          bias=config.bias, init_gain=config.init_gain, readout_from=net.readout_from,
                          seed=seed)
        new_net.load_state_dict(net.state_dict())
        cfg = replace(config, epochs=opts.retrain_epochs, lr=opts.retrain_lr or config.lr / 2)
        hist = fit(new_net, task, cfg, seed=rseed, init_readout=False)
        net = new_net
        res, _ = transfer_metrics(net, clients_by_layer, task, cfg, seed=rseed + 17, max_batch=opts.max_batch)
        inst = {"collect": inst_collect, "transfer": float(res["instrument_s"])}
        info["instrument_s"]["collect"] += inst["collect"]
        info["instrument_s"]["transfer"] += inst["transfer"]
        info["rounds"].append({"round": r + 1, "sim": res["sim"], "transfer": res["transfer"],
                               "instrument_s": inst, "history": hist,
                               "sequences": [int(sum(len(d[0]) for d in nd)) for nd in new_data],
                               "twin_loss": [h["loss"][-1] for h in refits],
                               "twin_nrmse_new_data": {"before_refit": err_before, "after_refit": [
                                   float(np.mean([twin_error(twins[g], *d) for d in fresh[g]]))
                                   for g in range(len(twins))]}})
    info["instrument_s"]["total"] = info["instrument_s"]["collect"] + info["instrument_s"]["transfer"]
    info["twins"] = twins
    return net, info
