"""Networks of twins (eq. (4)), noise-aware training by BPTT, transfer to rigs, baselines, cascade.

Stage functions (plain data in, plain data out):

- :func:`train_network` ``(twins_by_layer, task_data, config, *, seed) -> (Network, history)``
- :func:`train_software` ``(task_data, config, *, kind, seed) -> (SoftwareNetwork, history)``
- :func:`evaluate` ``(model, task, config, split) -> metric dict`` (simulation)
- :func:`transfer` ``(network, clients_by_layer, x, ...) -> TransferResult`` (rigs, via the bus)
- :func:`transfer_metrics` / :func:`run_variants` (sim vs transfer per variant)
- :func:`reservoir_baseline` (random weights matched to a trained network, ridge readout)
- :func:`run_cascade` / :func:`compare_cascade` (cascade learning, Fig. 4a)
"""
from .config import TrainConfig
from .data import TaskData, as_task_data, metrics
from .maps import PiSpec
from .model import Network, NetworkOutput
from .software import SoftwareNetwork
from .train import evaluate, fit, predict, train_network, train_software

__all__ = ["TrainConfig", "TaskData", "as_task_data", "metrics", "PiSpec", "Network", "NetworkOutput",
           "SoftwareNetwork", "evaluate", "fit", "predict", "train_network", "train_software"]
