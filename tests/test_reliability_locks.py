"""Exclusive access (lock/unlock leases, heartbeats, expiry -> make_safe), the status op, and a client
that reports a dead server within a bounded time."""
import itertools
import threading
import time

import numpy as np
import pytest

from bridge import RigClient, RigServer
from bridge.errors import ProtocolError, RigError, RigUnavailable
from bridge.backends.testrigs import EchoRig, LeakyRig

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)

_ids = itertools.count()
U = np.zeros((1, 4, 1))


@pytest.fixture
def two_clients():
    ep = f"inproc://locks-{next(_ids)}"
    rigs = {"a": EchoRig("a"), "b": LeakyRig("b", n_out=2, seed=1)}
    server = RigServer(rigs, ep).start()
    alice = RigClient(ep, "a", timeout_s=5, name="alice")
    bob = RigClient(ep, "a", timeout_s=5, name="bob")
    yield server, rigs, alice, bob
    alice.close()
    bob.close()
    server.close()


def test_lock_gives_exclusive_access(two_clients):
    server, rigs, alice, bob = two_clients
    got = alice.lock(30)
    assert got["holder"] == "alice" and 29 < got["lease_left_s"] <= 30
    alice.drive(U)                                       # the holder drives
    with pytest.raises(RigError, match=r"locked by alice for \d") as err:
        bob.drive(U)
    assert err.value.code == "BUSY"
    with pytest.raises(RigError, match="locked by alice"):
        bob.lock(5)
    assert bob.drive(U, rig="b").outputs.shape == (1, 4, 2)   # other rigs stay free
    st = bob.status()
    a = st["rigs"]["a"]
    assert a["holder"] == "alice" and a["lease_left_s"] > 20 and a["drives"] == 1
    assert a["errors"] == {"BUSY": 2} and st["rigs"]["b"]["holder"] is None
    assert alice.unlock() is True
    bob.drive(U)                                         # free again
    assert rigs["a"].drive_calls == 2


def test_unlock_by_another_client_is_refused(two_clients):
    _, _, alice, bob = two_clients
    alice.lock(30)
    with pytest.raises(RigError, match="locked by alice") as err:
        bob.unlock()
    assert err.value.code == "BUSY"
    assert alice.unlock() is True and alice.unlock() is False


def test_expired_lease_frees_the_rig_and_makes_it_safe(two_clients):
    server, rigs, alice, bob = two_clients
    now = [time.monotonic()]
    server._leases.clock = lambda: now[0]                # an injected clock, seconds
    alice.lock(0.3)
    safe_before = rigs["a"].make_safe_calls
    made_safe = threading.Event()
    rigs["a"].make_safe = lambda: (EchoRig.make_safe(rigs["a"]), made_safe.set())
    now[0] += 0.9
    bob.drive(U)                                         # the lease ran out: bob may drive
    assert made_safe.wait(10)                            # the server's loop expires it and makes it safe
    assert rigs["a"].make_safe_calls == safe_before + 1
    assert server.status()["leases_expired"] == 1 and not rigs["a"].closed


def test_heartbeats_keep_a_lease_alive(two_clients):
    server, rigs, alice, bob = two_clients
    with alice.lease(0.6, renew_s=0.15):
        for _ in range(10):                              # 10 renewals: 1.5 s, 2.5 leases long
            assert alice._lease_thread.renewed.acquire(timeout=10)
        with pytest.raises(RigError, match="locked by alice"):
            bob.drive(U)
        alice.drive(U)
    bob.drive(U)                                         # unlocked at the end of the block
    assert server.status().get("leases_expired", 0) == 0


def test_lock_args_are_checked(two_clients):
    _, _, alice, _ = two_clients
    for args in ({"lease_s": 0}, {"lease_s": -1}, {"lease_s": 1e9}, {}, {"lease_s": "5"},
                 {"lease_s": 5, "holder": 3}, {"lease_s": 5, "extra": 1}):
        with pytest.raises(ProtocolError):
            alice.request("lock", rig="a", args=args)
    with pytest.raises(RigUnavailable):
        alice.request("lock", rig="nope", args={"lease_s": 5})


def test_dead_server_is_reported_in_bounded_time():
    rig = EchoRig("e")
    server = RigServer({"e": rig}, "tcp://127.0.0.1:*").start()
    client = RigClient(server.endpoints[0], "e", timeout_s=60.0, retries=2, dead_after_s=0.5, backoff_s=0.05)
    try:
        client.drive(U)
        server.close()
        t0 = time.monotonic()
        with pytest.raises(RigUnavailable, match="is gone"):
            client.drive(U)
        assert time.monotonic() - t0 < 6.0              # not 3 x 60 s of timeouts
    finally:
        client.close()
        server.close()


def test_rig_status_command(two_clients, capsys):
    import json

    from nado.cli import main
    server, _, alice, _ = two_clients
    alice.lock(30)
    assert main(["rig", "status", "--connect", server.endpoints[0]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rigs"]["a"]["holder"] == "alice" and out["rigs"]["b"]["holder"] is None
