"""Transfer: run a trained network on rigs through the bus, layer by layer.

The weights, ``h``, ``pi`` and readout are the network's own; only the twins
are replaced by rigs reached through ``bridge.RigClient`` (anything with
``describe()`` and ``drive(inputs, *, reset, seed) -> DriveResult``). For each
hidden layer ``l``::

    S_l = h_l(theta_l z_{l-1} + b_l)                  # (N, T, n_nodes, n_in), from the previous
                                                      #   layer's *physical* activities
    drive(S_l as (N*n_nodes, T, n_in), reset=True)    # ONE batched drive per layer (a real rig's
                                                      #   server runs the experiments serially)
    z_l = pi_l(outputs, initial)                      # same normalisation constants as in simulation

``pi`` normalises with the twin's ``obs_mean``/``obs_std`` both here and in
simulation, so the readout sees one scale. Inputs are clipped to the rig's
declared safe range (``describe()['input']``); ``h`` already keeps them inside
the twin's active range, so clipping only absorbs rounding. ``max_batch`` splits
a layer's drive into chunks (default: one drive).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..device import module_device, to_device
from ..errors import ConfigError
from .config import TrainConfig
from .data import TaskData, as_task_data, metrics
from .model import Network
from .train import evaluate, readout_steps


@dataclass
class TransferResult:
    """outputs ``(N, T, n_outputs)``; activities per layer ``(N, T, D_l)`` (physical, after pi);
    inputs per layer ``(N, T, n_nodes, n_in)`` physical; observables per layer
    ``(N, n_nodes, T, n_obs)`` raw rig outputs; drives: number of drive calls per layer;
    instrument_s: instrument time summed over drives."""

    outputs: np.ndarray
    activities: list[np.ndarray]
    inputs: list[np.ndarray]
    observables: list[np.ndarray]
    drives: list[int] = field(default_factory=list)
    instrument_s: float = 0.0


def _check_rig(client, network: Network, l: int) -> tuple[float, float]:
    d = client.describe()
    n_in, n_out = int(d["input"]["dims"][0]), int(d["output"]["dims"][0])
    m = network.maps[l]
    if n_in != m.n_in or n_out != m.n_obs:
        raise ConfigError(f"layer {l + 1}: rig '{d.get('name')}' takes {n_in} input(s) and gives {n_out} "
                          f"output(s), but the layer's twin has n_in={m.n_in}, n_obs={m.n_obs}; "
                          "map the layer to a rig of the kind its twin was fitted on")
    return float(d["input"]["min"]), float(d["input"]["max"])


def transfer_layer(network: Network, l: int, client, z_prev: np.ndarray, *, seed: int | None = None,
                   max_batch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float]:
    """Drive hidden layer ``l`` on ``client`` from physical activities ``z_prev`` ``(N, T, D)``.

    Returns ``(activities (N,T,D_l), inputs (N,T,n,n_in), observables (N,n,T,n_obs), drives, instrument_s)``.
    """
    lo, hi = _check_rig(client, network, l)
    N, T = z_prev.shape[:2]
    n = network.n_nodes[l]
    with torch.no_grad():
        dev = module_device(network)
        s = network.layer_inputs(l, to_device(np.asarray(z_prev, np.float32), dev)).double().cpu().numpy()
    flat = np.clip(s.transpose(0, 2, 1, 3).reshape(N * n, T, -1), lo, hi)
    step = flat.shape[0] if not max_batch else int(max_batch)
    limit = client.describe().get("max_drive_elements")   # the server's drive-size limit, if told
    if limit:
        step = max(1, min(step, int(limit) // max(1, flat.shape[1] * flat.shape[2])))
    outs, inits, drives, inst = [], [], 0, 0.0
    for i in range(0, flat.shape[0], step):
        r = client.drive(flat[i:i + step], reset=True, seed=None if seed is None else int(seed) + i)
        outs.append(np.asarray(r.outputs, dtype=np.float64))
        inits.append(np.asarray(r.initial, dtype=np.float64))
        drives += 1
        inst += float(r.instrument_s)
    obs, init = np.concatenate(outs), np.concatenate(inits)
    with torch.no_grad():
        z = network.layer_activities(l, to_device(obs, dev), to_device(init, dev), N).cpu().numpy()
    return z, s, obs.reshape(N, n, T, -1).astype(np.float32), drives, inst


def transfer(network: Network, clients_by_layer: Sequence, x: np.ndarray, *, seed: int | None = 0,
             max_batch: int | None = None, start_layer: int = 0) -> TransferResult:
    """Run ``network`` on rigs for inputs ``x`` ``(N, T, n_inputs)`` (task units), layer by layer.

    ``clients_by_layer[l]`` serves hidden layer ``l`` (one client may serve several layers).
    ``start_layer > 0`` treats ``x`` as the physical activities of layer ``start_layer - 1``.
    """
    if not isinstance(network, Network):
        raise ConfigError("only networks of twins can be transferred (software references have no rig)")
    if len(clients_by_layer) != network.n_layers:
        raise ConfigError(f"need one rig client per hidden layer ({network.n_layers}), got {len(clients_by_layer)}")
    if start_layer > 0 and network.readout_from == "all":
        raise ConfigError("start_layer > 0 needs a readout from the last layer only; this network's "
                          "readout sees every layer (readout_from='all'): transfer from layer 0")
    z = np.asarray(x, dtype=np.float32)
    res = TransferResult(np.empty(0), [], [], [], [], 0.0)
    for l in range(start_layer, network.n_layers):
        z, s, obs, nd, inst = transfer_layer(network, l, clients_by_layer[l], z,
                                             seed=None if seed is None else int(seed) + 1000003 * l,
                                             max_batch=max_batch)
        res.activities.append(z)
        res.inputs.append(s)
        res.observables.append(obs)
        res.drives.append(nd)
        res.instrument_s += inst
    with torch.no_grad():
        dev = module_device(network)
        acts = [to_device(a, dev) for a in res.activities]
        res.outputs = network.readout(network.readout_input(acts)).cpu().numpy()
    return res


def transfer_metrics(network: Network, clients_by_layer: Sequence | None, task_data: Any,
                     config: TrainConfig | None = None, *, split: str = "test", seed: int = 0,
                     sim_noise: bool | None = None, max_batch: int | None = None
                     ) -> tuple[dict[str, Any], TransferResult]:
    """``{sim: metrics, transfer: metrics, drives, instrument_s}`` side by side, plus the raw result.

    ``sim`` runs the twins with noise on when ``sim_noise`` (default: ``config.noise``), seeded
    ``seed + 11``; the rigs are driven with ``seed``. ``clients_by_layer=None``: simulation only
    (``transfer`` None, no drives, raw result None).
    """
    config = config or TrainConfig(nodes=tuple(network.n_nodes))
    task = as_task_data(task_data)
    x = getattr(task, f"x_{split}")
    sim = evaluate(network, task, config, split, noise=sim_noise, seed=seed + 11)
    if clients_by_layer is None:
        return {"sim": sim, "transfer": None, "drives": [], "instrument_s": 0.0}, None
    res = transfer(network, clients_by_layer, x, seed=seed, max_batch=max_batch)
    tr = metrics(task, res.outputs, split, readout_steps(config, task, x.shape[1]))
    return {"sim": sim, "transfer": tr, "drives": res.drives, "instrument_s": res.instrument_s}, res
