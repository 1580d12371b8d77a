"""The comparison the paper makes, as one stage: ``sde``, ``ode``, ``rc``, ``mlp``, ``leaky``.

:func:`run_variants` trains each variant on the same task data and returns the
plain dict the scenario runner writes under ``networks`` in results.json::

    {VARIANT: {"sim": {accuracy | mse, nmse, mse_by_horizon}, "transfer": {...} | None,
               "history": {...}, ...}}

- ``sde``: weights trained through the noise-aware (SDE) twins, noise on; its
  ``sim`` column is evaluated with noise on (what it predicts for the rig).
- ``ode``: weights trained through the noise-free (ODE) twins; ``sim`` is the
  deterministic prediction.
- ``rc``: reservoir baseline with hidden weights matched to the ``sde``
  network's (``rc1``: one layer with the same node count, if asked).
- ``mlp`` / ``leaky``: software references of the same shape; ``transfer`` is
  None (there is no device to transfer them to).
Missing twins or clients skip the variants that need them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from .baselines import reservoir_baseline
from .config import TrainConfig
from .data import as_task_data
from .train import _config, evaluate, train_network, train_software
from .transfer import transfer_metrics

ALL = ("sde", "ode", "rc", "mlp", "leaky")


def run_variants(task_data: Any, config: TrainConfig | dict | None = None, *,
                 sde_twins: Sequence | None = None, ode_twins: Sequence | None = None,
                 clients_by_layer: Sequence | None = None, variants: Sequence[str] = ALL,
                 seed: int = 0, keep_networks: dict | None = None) -> dict[str, Any]:
    """Train and evaluate each of ``variants``; see the module docstring for the result layout.

    ``keep_networks``: a dict that receives the trained models by variant name (for saving).
    """
    config = _config(config)
    task = as_task_data(task_data)
    out: dict[str, Any] = {}
    nets = keep_networks if keep_networks is not None else {}
    for v, twins, noise in (("sde", sde_twins, True), ("ode", ode_twins, False)):
        if v not in variants or twins is None:
            continue
        cfg = replace(config, noise=noise)
        net, hist = train_network(twins, task, cfg, seed=seed)
        nets[v] = net
        if clients_by_layer is not None:
            res, _ = transfer_metrics(net, clients_by_layer, task, cfg, seed=seed + 17)
        else:
            res = {"sim": evaluate(net, task, cfg, noise=noise, seed=seed + 11), "transfer": None}
        out[v] = {**res, "history": hist, "weights": net.weight_arrays()}
    base = nets.get("sde") or nets.get("ode")
    if base is not None:
        for v, single in (("rc", False), ("rc1", True)):
            if v in variants:
                clients = clients_by_layer
                if clients is not None and single:
                    clients = list(clients_by_layer[:1])
                out[v] = reservoir_baseline(base, task, config, clients_by_layer=clients, seed=seed + 23,
                                            single_layer=single)
    for v, kind in (("mlp", "static"), ("leaky", "leaky")):
        if v in variants:
            net, hist = train_software(task, config, kind=kind, seed=seed)
            nets[v] = net
            out[v] = {"sim": evaluate(net, task, config, seed=seed), "transfer": None, "history": hist,
                      "software": True}
    return out
