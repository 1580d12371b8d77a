"""A pool of three emulated-NRA server processes (``nado rig serve``, realtime clock): a seeded pooled
drive equals one rig's drive under the pool's contract (chunk k with chunk_seed(S, k)), in order and
shape; killing one member mid-drive still completes the drive, with the same results."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bridge import RigClient
from bridge.pool import RigPool, reference_drive
from nado.bench.pool import spawn_servers, stop_servers

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(180)]

SPEED = 40.0           # realtime clock: a drive takes instrument_s / 40 of wall time
CHUNK = 16


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    servers = spawn_servers(3, speed=SPEED, folder=tmp_path_factory.mktemp("pool"))
    yield servers
    stop_servers(servers)


def _inputs(B: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(15.0, 40.0, (B, 20, 1))   # Oe, over the active range


def test_pooled_drive_equals_one_rig_per_contract(members):
    x = _inputs(40)
    with RigPool([(ep, "nra") for _, ep in members], timeout_s=10, chunk=CHUNK) as pool:
        assert pool.describe()["kind"] == "nra"
        pooled = pool.drive(x, seed=123)
        assert len(pool.last["members"]) == 3                 # every member took chunks
    with RigClient(members[2][1], "nra", timeout_s=10) as one:
        ref = reference_drive(one, x, seed=123, chunk=CHUNK)
    assert pooled.outputs.shape == (40, 20, 1) and pooled.initial.shape == (40, 1)
    np.testing.assert_array_equal(pooled.outputs, ref.outputs)
    np.testing.assert_array_equal(pooled.initial, ref.initial)
    assert np.std(pooled.outputs[:, -1, 0]) > 0               # real, noisy, input-dependent outputs


def test_killing_a_member_mid_drive_completes_the_drive(members):
    x = _inputs(192, seed=1)           # ~66 s of instrument time: ~0.6 s on three rigs at speed 40
    with RigPool([(ep, "nra") for _, ep in members], timeout_s=1.5, chunk=CHUNK, down_s=120) as pool:
        before = pool.drive(x, seed=9)
        assert pool.last["rounds"] == 1
        out: dict = {}
        t = threading.Thread(target=lambda: out.update(r=pool.drive(x, seed=9)))
        t0 = time.perf_counter()
        victim, victim_ep = members[1]
        with RigClient(victim_ep, "nra", timeout_s=10) as probe:   # event: the victim is driving its share
            deadline = time.monotonic() + 30
            t.start()
            while probe.status(rig="nra")["rigs"]["nra"]["waiting"] == 0 and time.monotonic() < deadline:
                pass
        victim.kill()                                          # SIGKILL: the server is gone
        t.join(60)
        assert not t.is_alive() and "r" in out, "the pooled drive did not complete"
        assert time.perf_counter() - t0 < 30
        np.testing.assert_array_equal(out["r"].outputs, before.outputs)   # nothing lost or changed
        np.testing.assert_array_equal(out["r"].initial, before.initial)
        status = {s["endpoint"]: s for s in pool.status()}
        assert status[victim_ep]["down"] and status[victim_ep]["error"]
        assert pool.last["rounds"] >= 2 and pool.last["members"][f"{victim_ep}/nra"]["failed"] > 0
