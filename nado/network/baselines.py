"""Reservoir-computing baselines: random hidden weights, only the readout trained.

The paper's Supplementary Fig. 11b: the same architecture, with hidden weights
drawn at random from distributions *matched to the trained network's* - here
a normal with the mean and standard deviation of each trained layer's weights
(and biases) - and only the readout fitted, by ridge regression (closed form,
the ridge strength picked on a 20 % hold-out of the fitting set) on the
activities of the last hidden layer:

- classification: features = the last layer's activities averaged over the
  readout steps (the last step by default), targets one-hot, class = argmax;
- regression: features = activities at every step after the washout.

In simulation the readout is fitted on simulated activities; after transfer it
is fitted on *physical* activities of the training inputs driven through the
rigs and evaluated on physical activities of the test inputs.
``single_layer=True`` builds one hidden layer with the same total node count
(the EMG baseline), weights matched to the trained first layer.

Regression (Mackey-Glass) has two references of the network's shape (variants
``rc`` and ``leaky`` in :mod:`nado.network.variants`): ``rc`` - random connections
(the network's initialisation, :func:`rc_regression`), ridge readout on the
physical activities - and ``leaky`` - a software leaky-integrator network trained
like the device networks (the paper's 1e-3 reference at t+5).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .config import TrainConfig
from .data import TaskData, as_task_data, metrics
from .model import Network
from .train import predict, readout_steps
from .transfer import transfer

ALPHAS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def ridge_fit(features: np.ndarray, targets: np.ndarray, *, classification: bool, alphas=ALPHAS,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge readout ``targets ~ features @ W.T + b``: returns ``(W (O,D), b (O,), alpha)``."""
    F_ = np.asarray(features, dtype=np.float64)
    Y = np.asarray(targets, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(F_.shape[0])
    n_hold = max(1, F_.shape[0] // 5) if F_.shape[0] >= 10 else 0
    hold, fitset = idx[:n_hold], idx[n_hold:]

    def solve(Fm, Ym, alpha):
        mu, ym = Fm.mean(0), Ym.mean(0)
        A = (Fm - mu).T @ (Fm - mu) + alpha * Fm.shape[0] * np.eye(Fm.shape[1])
        W = np.linalg.solve(A, (Fm - mu).T @ (Ym - ym)).T
        return W, ym - W @ mu

    best_alpha, best = alphas[0], -np.inf
    if n_hold:
        for a in alphas:
            W, b = solve(F_[fitset], Y[fitset], a)
            pred = F_[hold] @ W.T + b
            score = (np.mean(pred.argmax(1) == Y[hold].argmax(1)) if classification
                     else -np.mean((pred - Y[hold]) ** 2))
            if score > best:
                best, best_alpha = score, a
    W, b = solve(F_, Y, best_alpha)
    return W, b, float(best_alpha)


def readout_features(task: TaskData, config: TrainConfig, z: np.ndarray, y: np.ndarray):
    """``(features, targets)`` for a ridge readout from last-layer activities ``z`` ``(N, T, D)``."""
    if task.kind == "classification":
        lo, hi = readout_steps(config, task, z.shape[1])
        onehot = np.eye(task.n_outputs)[np.asarray(y)]
        return z[:, lo:hi].mean(1), onehot
    w = task.washout
    return z[:, w:].reshape(-1, z.shape[-1]), np.asarray(y)[:, w:].reshape(-1, y.shape[-1])


def matched_random_network(trained: Network, *, seed: int = 0, single_layer: bool = False) -> Network:
    """A network like ``trained`` whose hidden weights are drawn N(mean, std) of the trained ones."""
    g = torch.Generator().manual_seed(int(seed))
    if single_layer:
        net = Network([trained.twins[0]], [sum(trained.n_nodes)], trained.n_inputs, trained.n_outputs,
                      pi=trained.maps[0].pi_spec, bias=True, seed=seed)
        sources = [0]
    else:
        net = Network(trained.twins, trained.n_nodes, trained.n_inputs, trained.n_outputs,
                      pi=[m.pi_spec for m in trained.maps], bias=True, seed=seed)
        sources = list(range(trained.n_layers))
    with torch.no_grad():
        for l, src in enumerate(sources):
            for mine, theirs in ((net.weights[l], trained.weights[src]),
                                 (net.biases[l], None if trained.biases is None else trained.biases[src])):
                if theirs is None:
                    mine.zero_()
                    continue
                theirs = theirs.detach()
                mu, sd = float(theirs.mean()), float(theirs.std()) if theirs.numel() > 1 else 0.0
                mine.copy_(mu + sd * torch.randn(mine.shape, generator=g))
    return net


def _set_readout(net: Network, W: np.ndarray, b: np.ndarray) -> None:
    with torch.no_grad():
        net.weights[-1].copy_(torch.as_tensor(W, dtype=torch.float32))
        net.biases[-1].copy_(torch.as_tensor(b, dtype=torch.float32))


def reservoir_baseline(trained: Network, task_data: Any, config: TrainConfig | None = None, *,
                       clients_by_layer: Sequence | None = None, seed: int = 0, single_layer: bool = False,
                       noise: bool = True, max_fit: int | None = 1000) -> dict[str, Any]:
    """RC baseline: ``{sim: metrics, transfer: metrics | None, alpha: {sim, transfer}}``.

    ``clients_by_layer`` (one per hidden layer of the *baseline*; for ``single_layer``
    give one) enables the transfer column; ``max_fit`` caps the training samples
    the readout is fitted on (and hence driven through the rigs).
    """
    config = config or TrainConfig(nodes=tuple(trained.n_nodes))
    net = matched_random_network(trained, seed=seed, single_layer=single_layer)
    out = ridge_readout(net, task_data, config, clients_by_layer=clients_by_layer, seed=seed, noise=noise,
                        max_fit=max_fit)
    out["single_layer"] = single_layer
    return out


def ridge_readout(net: Network, task_data: Any, config: TrainConfig, *, clients_by_layer: Sequence | None = None,
                  seed: int = 0, noise: bool = True, max_fit: int | None = 1000) -> dict[str, Any]:
    """Fit ``net``'s readout by ridge regression, hidden weights untouched; evaluate it.

    Returns ``{sim, transfer, alpha: {sim, transfer}, drives}`` (``transfer`` None without
    clients): in simulation the readout sees simulated activities of the training inputs, after
    transfer the *physical* activities of the training inputs driven through the rigs.
    """
    task = as_task_data(task_data)
    cls = task.kind == "classification"
    xtr, ytr = task.x_train[:max_fit], task.y_train[:max_fit]
    steps = readout_steps(config, task, task.x_test.shape[1])
    out: dict[str, Any] = {"alpha": {}}
    # simulation
    _, acts = predict(net, xtr, noise=noise, seed=seed + 1, keep_activities=True)
    W, b, out["alpha"]["sim"] = ridge_fit(*readout_features(task, config, acts[-1], ytr), classification=cls,
                                          seed=seed)
    _set_readout(net, W, b)
    o, _ = predict(net, task.x_test, noise=noise, seed=seed + 2)
    out["sim"] = metrics(task, o, "test", steps)
    out["transfer"] = None
    if clients_by_layer is not None:
        rtr = transfer(net, clients_by_layer, xtr, seed=seed + 3)
        W, b, out["alpha"]["transfer"] = ridge_fit(*readout_features(task, config, rtr.activities[-1], ytr),
                                                   classification=cls, seed=seed)
        _set_readout(net, W, b)
        rte = transfer(net, clients_by_layer, task.x_test, seed=seed + 4)
        out["transfer"] = metrics(task, rte.outputs, "test", steps)
        out["drives"] = rtr.drives + rte.drives
    return out


def rc_regression(twins_by_layer: Sequence, clients_by_layer: Sequence | None, task_data: Any,
                  config: TrainConfig, *, seed: int = 0, max_fit: int | None = 1000) -> dict[str, Any]:
    """The regression RC baseline: the network's shape (``config.nodes``, ``config.pi``) on the
    given twins/rigs with *random* connections (the network's initialisation, drawn with ``seed``)
    and only a ridge readout trained, on the physical activities of the last layer after transfer.

    Returns ``{sim, transfer, alpha, drives, nodes}``; metrics in task units.
    """
    task = as_task_data(task_data)
    net = Network(list(twins_by_layer), config.nodes, task.n_inputs, task.n_outputs, pi=config.pi_specs(),
                  bias=True, init_gain=config.init_gain, seed=seed)
    out = ridge_readout(net, task, config, clients_by_layer=clients_by_layer, seed=seed, noise=config.noise,
                        max_fit=max_fit)
    out["nodes"] = list(config.nodes)
    return out
