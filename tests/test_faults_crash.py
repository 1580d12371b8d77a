"""A rig server process that crashes (station ``faults.crash_after``) or hangs (SIGSTOP): the client
reports it within a bounded time, and collection resumed on a restarted server is exact.
Subprocess servers: marked slow (about 15 s)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bridge import RigClient
from bridge.errors import RigUnavailable
from nado.data.collect import collect
from nado.data.dataset import load_dataset
from nado.errors import DatasetError

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)

KW = dict(sequences=40, length=6, repeats=(4, 3), resets=5, batch=8, seed=7, active_range=(10.0, 60.0),
          progress=False)
FIELDS = ("dynamics_inputs", "dynamics_outputs", "dynamics_initial", "repeats_outputs", "reset_initial")


def start_server(tmp_path, name, faults=""):
    st = tmp_path / f"{name}.toml"
    st.write_text(f'[rigs.nra]\nbackend = "physics.nra"\nseed = 1\n{faults}\n')
    proc = subprocess.Popen([sys.executable, "-m", "nado.cli", "rig", "serve", str(st), "--bind",
                             "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = proc.stdout.readline()
    assert " on tcp://" in line, line
    return proc, line.split(" on ")[1].split(";")[0].strip()


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()


@pytest.mark.slow
def test_crashed_server_is_reported_and_collection_resumes_exactly(tmp_path):
    proc, ep = start_server(tmp_path, "crashing", "faults = { crash_after = 4 }")
    path = tmp_path / "crashed.h5"
    try:
        with RigClient(ep, "nra", timeout_s=30.0, retries=2, dead_after_s=1.0) as client:
            t0 = time.monotonic()
            with pytest.raises(RigUnavailable, match="is gone"):
                collect(client, path, **KW)
            assert time.monotonic() - t0 < 20.0
        assert proc.wait(10) == 70                       # the injected crash, not a clean exit
    finally:
        stop(proc)
    with pytest.raises(DatasetError, match="unfinished"):
        load_dataset(path)
    proc, ep = start_server(tmp_path, "healthy")
    try:
        with RigClient(ep, "nra", timeout_s=30.0) as client:
            done = collect(client, path, **KW)
            ref = collect(client, tmp_path / "ref.h5", **KW)
    finally:
        stop(proc)
    for name in FIELDS:
        assert getattr(done, name).tobytes() == getattr(ref, name).tobytes(), name


@pytest.mark.slow
def test_hung_server_is_reported_by_heartbeats(tmp_path):
    proc, ep = start_server(tmp_path, "hanging")
    try:
        with RigClient(ep, "nra", timeout_s=20.0, retries=1, dead_after_s=1.0) as client:
            client.drive(np.full((1, 3, 1), 20.0))
            os.kill(proc.pid, signal.SIGSTOP)            # alive but silent: only heartbeats notice
            t0 = time.monotonic()
            with pytest.raises(RigUnavailable):
                client.drive(np.full((1, 3, 1), 20.0))
            assert time.monotonic() - t0 < 15.0          # not 2 x 20 s
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        stop(proc)
