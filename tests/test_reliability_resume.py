"""Durable collection: ``nado collect`` killed with SIGKILL at random moments, resumed each time,
ends bit-identical to an uninterrupted run (every sequence exactly once, in order).

The kills land anywhere: during start-up, the active-range step, mid-batch, mid-HDF5-write. A fixed
seed picks the kill times, so a failure is reproducible. Marked slow (about 20-40 s).
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nado.dataset import load_dataset
from nado.errors import DatasetError

STATION = """
[rigs.leaky]
backend = "leaky"
seed = 3
n_out = 2
latency_s = 0.003
"""
ARGS = ["--rig", "leaky", "--sequences", "800", "--length", "10", "--repeats", "20", "5",
        "--resets", "30", "--batch", "8", "--active-range", "-0.5", "0.5", "--seed", "3",
        "--no-progress", "--resume"]
FIELDS = ("dynamics_inputs", "dynamics_outputs", "dynamics_initial", "repeats_inputs", "repeats_outputs",
          "repeats_initial", "reset_initial")


def _cmd(station, out):
    return [sys.executable, "-m", "nado.cli", "collect", "--station", str(station), "--out", str(out), *ARGS]


@pytest.mark.slow
def test_collect_survives_sigkill_at_random_moments(tmp_path):
    station = tmp_path / "station.toml"
    station.write_text(STATION)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    ref = subprocess.run(_cmd(station, tmp_path / "ref.h5"), capture_output=True, text=True, env=env, timeout=120)
    full_s = time.monotonic() - t0
    assert ref.returncode == 0, ref.stderr
    rng = np.random.default_rng(8)
    out = tmp_path / "killed.h5"
    kills = 0
    for attempt in range(40):
        proc = subprocess.Popen(_cmd(station, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=env)
        delay = float(rng.uniform(0.2, 0.5)) * full_s
        try:
            rc = proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)   # no cleanup at all, like a power cut
            proc.wait()
            proc.stderr.close()
            kills += 1
            if out.exists():
                with pytest.raises(DatasetError):   # an unfinished file is never taken for data
                    load_dataset(out)
            continue
        err = proc.stderr.read()
        proc.stderr.close()
        assert rc == 0, err
        break
    else:
        pytest.fail("collection never finished after 40 tries")
    print(f"resume test: {kills} kills, {attempt + 1} runs")
    assert kills >= 3, f"only {kills} kills landed; the test did not exercise resume"
    a, b = load_dataset(out), load_dataset(tmp_path / "ref.h5")
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), f"{name} differs from the uninterrupted run"
