"""Networks of twins (eq. (4)), noise-aware training by BPTT, transfer to rigs, baselines, cascade.

Modules (one job each): :mod:`.maps` (h and pi), :mod:`.model` (Network, Algorithm 1),
:mod:`.software` (static / leaky MLP references), :mod:`.config` (TrainConfig),
:mod:`.data` (TaskData, metrics), :mod:`.train` (BPTT / truncated BPTT),
:mod:`.transfer` (rigs through the bus), :mod:`.baselines` (reservoir + ridge),
:mod:`.cascade` (Fig. 4a), :mod:`.variants` (sde/ode/rc/mlp/leaky in one call),
:mod:`.checkpoint` (weights on disk), :mod:`.toytwin` (an analytic stand-in twin for tests).
The stages that use them for a scenario are :mod:`nado.pipeline`.

Stage functions (plain data in, plain data out):

- ``train_network(twins_by_layer, task_data, config, *, seed) -> (Network, history)``
- ``train_software(task_data, config, *, kind="leaky"|"static", seed) -> (SoftwareNetwork, history)``
- ``evaluate(model, task, config, split="test", *, noise=None, seed) -> metrics``
- ``transfer(network, clients_by_layer, x, *, seed) -> TransferResult``
- ``transfer_metrics(network, clients_by_layer, task_data, config, *, seed) -> ({sim, transfer, ...}, TransferResult)``
- ``reservoir_baseline(trained, task_data, config, *, clients_by_layer, single_layer, seed) -> {sim, transfer}``
- ``run_cascade(twins_by_layer, clients_by_layer, task_data, config, *, seed) -> (Network, info)``
- ``run_variants(task_data, config, *, sde_twins, ode_twins, clients_by_layer, variants, seed) -> {variant: {sim, transfer}}``
"""
from .baselines import reservoir_baseline, ridge_fit
from .cascade import run_cascade
from .config import TrainConfig
from .data import TaskData, as_task_data, metrics
from .maps import PiSpec
from .model import Network, NetworkOutput
from .software import SoftwareNetwork
from .train import evaluate, fit, predict, train_network, train_software
from .transfer import TransferResult, transfer, transfer_metrics
from .variants import run_variants

__all__ = ["TrainConfig", "TaskData", "as_task_data", "metrics", "PiSpec", "Network", "NetworkOutput",
           "SoftwareNetwork", "evaluate", "fit", "predict", "train_network", "train_software",
           "TransferResult", "transfer", "transfer_metrics", "reservoir_baseline", "ridge_fit",
           "run_cascade", "run_variants"]
