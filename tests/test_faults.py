"""Fault injection (emulator/faults.py): dropped, delayed, damaged replies and failing drives.

Dropped/damaged/delayed replies are retried with the same id and answered from the server's cache:
the rig runs each drive once. Collection and transfer under random faults give exactly the data of
a fault-free run; a failing rig stops collection with a clear error and the resumed file is exact.
"""
import itertools
import logging

import numpy as np
import pytest

from bridge import RigClient, RigServer
from bridge.errors import RigError, StationError
from bridge.station import build_rigs, parse_station
from bridge.backends.testrigs import LeakyRig
from emulator.faults import FaultPlan, FaultyRig
from nado.data.collect import collect
from nado.data.dataset import load_dataset
from nado.errors import DatasetError

_ids = itertools.count()
U = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 7, 1))
KW = dict(sequences=40, length=6, repeats=(4, 3), resets=5, batch=8, seed=7, active_range=(-0.5, 0.5),
          progress=False)
FIELDS = ("dynamics_inputs", "dynamics_outputs", "dynamics_initial", "repeats_outputs", "reset_initial")


def leaky():
    return LeakyRig("leaky", n_out=2, seed=3)


@pytest.fixture
def bus():
    made = []

    def make(rig, **client_kw):
        ep = f"inproc://faults-{next(_ids)}"
        server = RigServer({"leaky": rig}, ep).start()
        client = RigClient(ep, "leaky", **{"timeout_s": 0.3, "retries": 6, "backoff_s": 0.01, **client_kw})
        made.append((server, client))
        return server, client

    yield make
    for server, client in made:
        client.close()
        server.close()


def reference(U, seed=1):
    return leaky().drive(U, seed=seed)


@pytest.mark.parametrize("fault", ["drop_first", "corrupt_first"])
def test_lost_or_damaged_reply_is_retried_without_a_second_drive(bus, fault, caplog):
    rig = FaultyRig(leaky(), {fault: 1})
    server, client = bus(rig)
    with caplog.at_level(logging.WARNING, logger="bridge.client"):
        res = client.drive(U, seed=1)
    np.testing.assert_array_equal(res.outputs, reference(U).outputs)
    assert rig.rig.drive_calls == 1                       # executed once, answered twice
    st = server.status()
    assert st["cache_hits"] == 1 and st[f"fault_{fault.split('_')[0]}"] == 1
    assert (fault == "corrupt_first") == any("damaged reply" in r.getMessage() for r in caplog.records)


def test_slow_drive_retry_joins_the_running_drive(bus):
    rig = FaultyRig(leaky(), {"delay": 1.0, "delay_s": 0.5})
    server, client = bus(rig, timeout_s=0.15)
    res = client.drive(U, seed=1)
    np.testing.assert_array_equal(res.outputs, reference(U).outputs)
    assert rig.rig.drive_calls == 1 and server.status()["joined"] >= 1


def test_failing_drive_reports_rig_fault(bus):
    rig = FaultyRig(leaky(), {"fail_first": 1})
    server, client = bus(rig)
    with pytest.raises(RigError, match="injected fault") as err:
        client.drive(U, seed=1)
    assert err.value.code == "RIG_FAULT" and rig.rig.drive_calls == 0
    np.testing.assert_array_equal(client.drive(U, seed=1).outputs, reference(U).outputs)   # a new id works
    assert server.status()["rigs"]["leaky"]["errors"] == {"RIG_FAULT": 1}


def test_collection_under_random_faults_is_exact(bus, tmp_path):
    rig = FaultyRig(leaky(), {"drop": 0.15, "corrupt": 0.15, "delay": 0.15, "delay_s": 0.4, "seed": 2})
    _, client = bus(rig)
    got = collect(client, tmp_path / "faulty.h5", **KW)
    _, clean = bus(leaky())
    ref = collect(clean, tmp_path / "ref.h5", **KW)
    c = rig.faults.counts
    assert c["drop"] >= 1 and c["corrupt"] >= 1 and c["delay"] >= 1, c
    assert rig.rig.drive_calls == rig.faults.drives            # no drive ran twice
    for name in FIELDS:
        assert getattr(got, name).tobytes() == getattr(ref, name).tobytes(), name


def test_collection_stops_on_rig_faults_and_resumes_exactly(bus, tmp_path):
    path = tmp_path / "stopped.h5"
    _, client = bus(FaultyRig(leaky(), {"rig_fault": 0.3, "seed": 4}))
    with pytest.raises(RigError, match="RIG_FAULT"):
        collect(client, path, **KW)
    with pytest.raises(DatasetError, match="unfinished"):
        load_dataset(path)                                   # never taken for a finished dataset
    _, clean = bus(leaky())
    done = collect(clean, path, **KW)                        # resume on a healthy rig
    ref = collect(clean, tmp_path / "ref.h5", **KW)
    for name in FIELDS:
        assert getattr(done, name).tobytes() == getattr(ref, name).tobytes(), name


def test_transfer_under_faults_is_exact(bus):
    from nado.network import Network
    from nado.network.toytwin import ToyTwin
    from nado.network.transfer import transfer

    def one_channel():
        return LeakyRig("leaky", n_in=1, n_out=1, lo=0.0, hi=1.0, leak=(0.5, 0.5), gain=12.0, seed=0)

    twin = ToyTwin(centre=0.0, gain=5.0, rate=0.5, noise_std=0.05, init_std=0.05, obs_mean=0.4, obs_std=0.3)
    net = Network([twin, twin], [6, 4], 5, 3, seed=0)
    x = np.random.default_rng(0).normal(size=(7, 4, 5)).astype(np.float32)
    faulty = FaultyRig(one_channel(), {"drop": 0.5, "corrupt": 0.3, "seed": 1})
    _, client = bus(faulty)
    _, clean = bus(one_channel())
    got = transfer(net, [client, client], x, seed=1, max_batch=10)
    ref = transfer(net, [clean, clean], x, seed=1, max_batch=10)
    assert sum(faulty.faults.counts.values()) >= 2
    np.testing.assert_array_equal(got.outputs, ref.outputs)
    assert faulty.rig.drive_calls == faulty.faults.drives == sum(got.drives)


def test_station_faults_table_on_emulated_rigs():
    st = parse_station({"rigs": {"nra": {"backend": "physics.nra", "faults": {"drop": 0.5, "seed": 1}},
                                 "asvi": {"backend": "physics.asvi", "faults": {}}}})
    rigs = build_rigs(st)
    assert callable(rigs["nra"].bridge_fault_hook) and rigs["nra"].faults.plan.drop == 0.5
    assert rigs["asvi"].faults is None                       # an empty table injects nothing
    for bad, msg in (({"drop": 2}, "probability"), ({"dropp": 0.1}, "unknown"), ({"crash_after": -1}, ">= 0"),
                     ({"delay_s": "x"}, "number")):
        with pytest.raises(StationError, match=msg):
            build_rigs(parse_station({"rigs": {"nra": {"backend": "physics.nra", "faults": bad}}}))
    assert FaultPlan.from_table({"crash_after": 3}).active and not FaultPlan().active
