"""Cascade learning (the paper's Fig. 4a): build the network layer by layer on corrective data.

For ``l = 1..L``:

1. train a one-hidden-layer network on twins of layer ``l``'s kind, fed with
   ``z_{l-1}`` (the task inputs for ``l = 1``, else the *recorded physical*
   activities of layer ``l-1``), with a temporary readout;
2. keep its input weights ``theta_l`` (fixed from now on);
3. unless ``l = L``: transfer layer ``l`` (drive its rig with ``z_{l-1}`` of the
   training inputs, one batched drive) and record its physical activities
   ``z_l`` - the corrective data set for the next layer.

The final network stacks ``theta_1..theta_L`` and a readout: by default refitted by
ridge regression on the *physical* activities of layer ``L`` (recorded like the others;
the readout is the last connection trained on corrective data) - or of every layer, side by
side, with ``config.readout_from = "all"`` (cascade-correlation's output units see all hidden
units, see :mod:`nado.network.model`; a deeper cascade then keeps what the shallower one's
readout had and can only add to it) - or the last
temporary readout (``readout="twin"``, trained on twins only);
it is evaluated like any network, in simulation and after transfer, so the
comparison with direct training (all layers trained jointly on twins) is like
for like. The twins are never retrained; only the training inputs are driven
through the rigs, once per layer.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch

from ..errors import ConfigError
from .config import TrainConfig
from .data import as_task_data
from .model import Network
from .train import _config, train_network
from .transfer import transfer_layer


def run_cascade(twins_by_layer: Sequence, clients_by_layer: Sequence, task_data: Any,
                config: TrainConfig | dict | None = None, *, seed: int = 0,
                readout: str = "ridge") -> tuple[Network, dict]:
    """Train ``len(config.nodes)`` layers by cascade learning; return ``(network, info)``.

    ``readout``: ``"ridge"`` (default) records the last layer's physical activities too and
    refits the readout on them by ridge regression (:func:`~nado.network.baselines.ridge_fit`,
    alpha chosen on a hold-out) - the corrective data set for the readout, as each layer's
    recording is for the next; ``"twin"`` keeps the last temporary readout trained on twins.
    info: ``{histories: [per-layer training history], drives: [per-layer recording drives],
    instrument_s, readout, alpha}``.
    """
    if readout not in ("ridge", "twin"):
        raise ConfigError(f"cascade readout must be 'ridge' or 'twin', got {readout!r}")
    config = _config(config)
    if readout == "ridge" and not config.bias:
        raise ConfigError("cascade readout='ridge' needs network biases (network.bias = true) or readout='twin'")
    if readout == "twin" and config.readout_from == "all":
        raise ConfigError("cascade readout='twin' keeps the last layer's temporary readout, which sees that "
                          "layer only; use readout='ridge' with network.readout_from = 'all'")
    task = as_task_data(task_data)
    L = len(config.nodes)
    if len(twins_by_layer) < L or len(clients_by_layer) < L:
        raise ConfigError(f"cascade of {L} layers needs {L} twins and {L} rig clients, got "
                          f"{len(twins_by_layer)} and {len(clients_by_layer)}")
    pis = config.pi_specs()
    pis = pis if isinstance(pis, list) else [pis] * L
    z_train = task.x_train
    recorded = []                                    # physical activities of each layer (N, T, D_l)
    stages, info = [], {"histories": [], "drives": [], "instrument_s": 0.0}
    for l in range(L):
        sub = task.with_inputs(z_train, z_train[:1])
        cfg = replace(config, nodes=(config.nodes[l],), pi=pis[l],        # one resume file per layer
                      checkpoint=f"{config.checkpoint}.layer{l}" if config.checkpoint else None)
        net_l, hist = train_network([twins_by_layer[l]], sub, cfg, seed=seed + 101 * l)
        stages.append(net_l)
        info["histories"].append(hist)
        if l < L - 1 or readout == "ridge":
            z_train, _, _, nd, inst = transfer_layer(net_l, 0, clients_by_layer[l], z_train,
                                                     seed=seed + 7919 * (l + 1))
            recorded.append(z_train)
            info["drives"].append(nd)
            info["instrument_s"] += inst
    net = Network(list(twins_by_layer[:L]), config.nodes, task.n_inputs, task.n_outputs, pi=pis,
                  bias=config.bias, readout_from=config.readout_from, seed=seed)
    with torch.no_grad():
        for l, st in enumerate(stages):
            net.weights[l].copy_(st.weights[0])
            if net.biases is not None:
                net.biases[l].copy_(st.biases[0])
        if config.readout_from == "last":        # "all": the ridge readout below sets it
            net.weights[-1].copy_(stages[-1].weights[-1])
            if net.biases is not None:
                net.biases[-1].copy_(stages[-1].biases[-1])
    info["readout"] = readout
    if readout == "ridge":
        from .baselines import readout_features, ridge_fit
        features = net.readout_input([torch.as_tensor(z) for z in recorded]).numpy()
        W, b, info["alpha"] = ridge_fit(*readout_features(task, config, features, task.y_train),
                                        classification=task.kind == "classification", seed=seed)
        with torch.no_grad():
            net.weights[-1].copy_(torch.as_tensor(W, dtype=net.weights[-1].dtype))
            net.biases[-1].copy_(torch.as_tensor(b, dtype=net.biases[-1].dtype))
    return net, info
