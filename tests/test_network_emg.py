"""EMG gestures through a network of twins: the regression test for "EMG does not learn".

The NRA's AMR response peaks in the middle of its active range (flat there). EMG windows
start at the movement onset, so inputs scaled into [0, 1] were mostly near 0: pre-activations
``theta x`` stayed near 0, ``h`` put every node at mid-range, the nodes saw nearly constant
inputs on the flat top of their response, and NRA networks stayed near chance while a leaky
MLP reached 95 %. ``PeakTwin`` below has that response shape; the loader now standardises
the electrodes, and a small network of PeakTwins learns the synthetic gestures.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nado.network import Network
from nado.network.config import TrainConfig
from nado.network.toytwin import ToyTwin
from nado.network.train import evaluate, train_network
from nado.network.data import as_task_data
from nado.tasks import emg as E


class PeakTwin(ToyTwin):
    """Noisy leaky integrator of ``1 - 16 ((s - mid) / (hi - lo))^4``: flat at mid-range, like the NRA."""

    def simulate(self, s, x0=None, *, noise=True, generator=None):
        c = self.config
        B, T, _ = s.shape
        y = self.sample_initial(B, generator) if x0 is None else x0
        mid = 0.5 * (c.input_lo + c.input_hi)
        drive = 1.0 - 16.0 * ((s.mean(-1, keepdim=True) - mid) / (c.input_hi - c.input_lo)) ** 4
        out = []
        for t in range(T):
            y = y + c.rate * (drive[:, t] - y)
            if noise and c.noise_std > 0:
                y = y + c.noise_std * torch.randn(y.shape, generator=generator)
            out.append(y)
        return torch.stack(out, dim=1)


@pytest.fixture(scope="module")
def emg_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emg")
    E.write_synthetic(folder, subjects=(1,), seed=0, move_s=0.6, rest_s=0.4)
    return E.load_ninapro(folder, subjects=(1,))


def _data(task, x_train, x_test):
    return {"kind": "classification", "x_train": x_train, "y_train": task.train_labels,
            "x_test": x_test, "y_test": task.test_labels, "n_classes": task.n_classes}


def _window_spread(net, x):
    """Std over samples and nodes of the layer-1 drive in the loss window, as a fraction of the range."""
    with torch.no_grad():
        s = net(torch.as_tensor(x), noise=False).inputs[0][:, 12:19]      # (N, 7, n, 1)
    return float(s.mean(1).std()) / (net.maps[0].hi - net.maps[0].lo).item()


def test_initial_drive_spreads_over_the_active_range(emg_task):
    twin = PeakTwin(kind="ode", input_lo=15.0, input_hi=34.0)
    net = Network([twin], [16], 10, 17, seed=0)
    assert _window_spread(net, emg_task.train_inputs) > 0.08
    # the old [0, 1] scaling (99th percentile) of the same windows: the drive hardly moves
    raw = emg_task.train_inputs.astype(np.float64) * emg_task.scale + emg_task.offset
    p99 = np.percentile(raw.reshape(-1, 10), 99, axis=0)
    old = np.clip(raw / p99, 0, 1).astype(np.float32)
    assert _window_spread(net, old) < 0.5 * _window_spread(net, emg_task.train_inputs)


@pytest.mark.e2e
def test_network_of_peak_twins_learns_emg(emg_task):
    torch.manual_seed(0)
    twin = PeakTwin(kind="sde", input_lo=15.0, input_hi=34.0, noise_std=0.1)
    cfg = TrainConfig(nodes=(16,), epochs=12, batch_size=16, lr=0.02, loss="ce_window", window=(12, 19),
                      val_fraction=0.0, progress=False)
    data = _data(emg_task, emg_task.train_inputs, emg_task.test_inputs)
    net, hist = train_network([twin], data, cfg, seed=0)
    acc = evaluate(net, as_task_data(data), cfg, "test", seed=1)["accuracy"]
    # 17 classes (chance 6 %), 51 test windows. Measured: 0.67 (loss 3.54 -> 1.80); the same run on
    # the old [0, 1]-scaled inputs: 0.41 (loss 3.62 -> 2.55)
    assert acc > 0.55, (acc, hist["loss"])
    assert hist["loss"][-1] < 0.6 * hist["loss"][0]
