"""RigServer and RigClient behaviour: retries without double execution, timeouts, concurrency
between rigs and not within one, clean shutdown (close, SIGTERM), endpoints, reply cache bounds."""
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from bridge import RigClient, RigServer
from bridge.errors import BadInput, RigError, RigTimeout, RigUnavailable, StationError
from bridge.rig import DriveResult
from bridge.backends.testrigs import EchoRig, LeakyRig
from bridge._cache import ReplyCache

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)


def ep():
    return f"inproc://server-{uuid.uuid4().hex}"


class BarrierRig(EchoRig):
    """A drive waits until the other rig's drive has started too: only concurrent rigs pass."""

    def __init__(self, name, barrier):
        super().__init__(name)
        self.barrier = barrier

    def drive(self, inputs, *, reset=True, seed=None):
        self.barrier.wait()
        return super().drive(inputs, reset=reset, seed=seed)


class OverlapRig(EchoRig):
    """Records the largest number of drives running at once."""

    def __init__(self, name="overlap"):
        super().__init__(name)
        self.running = self.most = 0
        self.guard = threading.Lock()

    def drive(self, inputs, *, reset=True, seed=None):
        with self.guard:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.02)
        with self.guard:
            self.running -= 1
        return DriveResult(np.asarray(inputs, dtype=float), np.zeros((len(inputs), 1)), 0.0)


def test_retry_reuses_the_id_and_never_drives_twice():
    rig = EchoRig(latency_s=0.8)
    e = ep()
    with RigServer({"echo": rig}, e), RigClient(e, "echo", timeout_s=0.3, retries=5) as client:
        res = client.drive(np.ones((1, 3, 1)))
        np.testing.assert_array_equal(res.outputs, 1.0)
        assert rig.drive_calls == 1


def test_timeout_after_retries_names_the_endpoint():
    e = ep()
    with RigServer({"echo": EchoRig(latency_s=1.0)}, e) as server:
        with RigClient(e, "echo", timeout_s=0.1, retries=1) as client:
            with pytest.raises(RigTimeout, match=e) as info:
                client.drive(np.ones((1, 1, 1)))
            assert isinstance(info.value, TimeoutError) and "2 tries" in str(info.value)
        assert server.status()["rigs"]["echo"]["drives"] == 1


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:{port}", "ipc://{tmp}/nobody.sock"])
def test_unreachable_server_is_unavailable(endpoint, tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with RigClient(endpoint.format(port=port, tmp=tmp_path), timeout_s=0.2, retries=1) as client:
        with pytest.raises(RigUnavailable, match="cannot reach"):
            client.ping()


def test_unknown_rig_and_rig_choice():
    e = ep()
    with RigServer({"a": EchoRig("a"), "b": EchoRig("b")}, e):
        with RigClient(e, "zz", timeout_s=5) as client:
            with pytest.raises(RigUnavailable, match="'a', 'b'") as info:
                client.describe()
            assert info.value.code == "UNKNOWN_RIG"
        with RigClient(e, timeout_s=5) as client:
            with pytest.raises(RigUnavailable, match="name one"):
                client.describe()
            assert client.describe(rig="b")["name"] == "b"
    e2 = ep()
    with RigServer({"only": EchoRig("only")}, e2), RigClient(e2, timeout_s=5) as client:
        assert client.describe()["name"] == "only" and client.rig == "only"


def test_client_side_errors():
    e = ep()
    with RigServer({"l": LeakyRig("l")}, e), RigClient(e, "l", timeout_s=5) as client:
        with pytest.raises(BadInput):
            client.drive(np.array([[["a"]]]))
        with pytest.raises(BadInput, match="seed"):
            client.drive(np.zeros((1, 1, 1)), seed=-3)
        with pytest.raises(RigError) as info:
            client.drive(np.zeros((2, 1, 1)), reset=True)
            client.drive(np.zeros((3, 1, 1)), reset=False)  # a continuation needs the same B
        assert info.value.code == "BAD_INPUT"


def test_different_rigs_work_concurrently():
    barrier = threading.Barrier(2, timeout=10)
    e = ep()
    results = {}
    with RigServer({"a": BarrierRig("a", barrier), "b": BarrierRig("b", barrier)}, e):
        def go(name):
            with RigClient(e, name, timeout_s=20, retries=0) as c:
                results[name] = c.drive(np.ones((1, 2, 1)))
        threads = [threading.Thread(target=go, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(results) == ["a", "b"]  # a serial server would break the barrier (RIG_FAULT)


def test_one_rig_serves_one_request_at_a_time_and_answers_hello_meanwhile():
    rig = OverlapRig()
    e = ep()
    with RigServer({"overlap": rig}, e):
        def go():
            with RigClient(e, "overlap", timeout_s=20, retries=0) as c:
                for _ in range(3):
                    c.drive(np.ones((1, 1, 1)))
        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        with RigClient(e, timeout_s=5) as c:
            assert c.hello()["rigs"] == ["overlap"]
        for t in threads:
            t.join(30)
    assert rig.most == 1


def test_close_makes_rigs_safe_and_is_idempotent():
    a, b = EchoRig("a"), LeakyRig("b")
    server = RigServer({"a": a, "b": b}, ep()).start()
    server.close()
    server.close()
    assert a.make_safe_calls == 1 and a.closed and b.make_safe_calls == 1 and b.closed
    never = EchoRig("n")
    RigServer({"n": never}, ep()).close()  # never started: still made safe
    assert never.closed


@pytest.mark.parametrize("kind", ["tcp", "ipc"])
def test_tcp_and_ipc_endpoints(kind, tmp_path):
    bind = "tcp://127.0.0.1:*" if kind == "tcp" else f"ipc://{tmp_path}/rig.sock"
    with RigServer({"l": LeakyRig("l", seed=1)}, bind) as server:
        (endpoint,) = server.endpoints
        assert endpoint.startswith(kind + "://") and not endpoint.endswith("*")
        with RigClient(endpoint, "l", timeout_s=10) as c:
            assert c.drive(np.zeros((2, 4, 1)), seed=2).outputs.shape == (2, 4, 4)
            assert c.ping() > 0


def test_bind_conflicts_and_bad_rigs_are_clear():
    with RigServer({"a": EchoRig()}, "tcp://127.0.0.1:*") as s1:
        with pytest.raises(RigUnavailable, match="cannot bind"):
            RigServer({"a": EchoRig()}, s1.endpoints[0])
    with pytest.raises(StationError, match="at least one rig"):
        RigServer({}, ep())
    with pytest.raises(StationError, match="lacks describe"):
        RigServer({"x": object()}, ep())


def test_status_counts():
    e = ep()
    with RigServer({"echo": EchoRig()}, e) as server, RigClient(e, "echo", timeout_s=5) as c:
        for _ in range(3):
            c.drive(np.ones((1, 1, 1)))
        with pytest.raises(BadInput):
            c.drive(np.full((1, 1, 1), np.nan))
        st = server.status()
    assert st["drives"] == 3 and st["errors"] == {"BAD_INPUT": 1} and st["requests"] == 4


def test_reply_cache_bounds():
    c = ReplyCache(size=2, age_s=60.0, max_bytes=100)
    for i in range(3):
        c.put(f"id{i}", ("drive", "r"), [b"x" * 10])
    assert c.get("id0") is None and c.get("id2") == (("drive", "r"), [b"x" * 10]) and len(c) == 2
    c.put("big", ("drive", "r"), [b"x" * 101])  # larger than the byte bound: not kept
    assert c.get("big") is None
    c.put("a", ("drive", "r"), [b"x" * 60])
    c.put("b", ("drive", "r"), [b"x" * 60])
    assert c.get("a") is None and c.get("b") is not None and c.nbytes <= 100
    now = [0.0]   # an injected clock, seconds
    old = ReplyCache(size=10, age_s=0.05, max_bytes=100, clock=lambda: now[0])
    old.put("a", ("drive", "r"), [b"x"])
    now[0] = 0.1
    assert old.get("a") is None


SERVE = """
import sys
from bridge.server import RigServer
from bridge.backends.testrigs import EchoRig

class Marked(EchoRig):
    def make_safe(self):
        print("made safe", flush=True)
server = RigServer({"echo": Marked()}, sys.argv[1])
print("ready", flush=True)
server.serve_forever()
print("stopped", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(sig, tmp_path):
    endpoint = f"ipc://{tmp_path}/sig.sock"
    proc = subprocess.Popen([sys.executable, "-c", SERVE, endpoint], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout.readline().strip() == "ready"
        with RigClient(endpoint, "echo", timeout_s=10) as c:
            c.drive(np.ones((1, 1, 1)))
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out.split() == ["made", "safe", "stopped"]


def test_client_reconnects_to_a_server_that_starts_late(tmp_path):
    endpoint = f"ipc://{tmp_path}/late.sock"
    rig = EchoRig()
    servers = []
    timer = threading.Timer(0.5, lambda: servers.append(RigServer({"echo": rig}, endpoint).start()))
    timer.start()
    try:
        with RigClient(endpoint, "echo", timeout_s=0.3, retries=10) as c:
            assert c.drive(np.ones((1, 2, 1))).outputs.shape == (1, 2, 1)
        assert rig.drive_calls == 1
    finally:
        timer.join()
        for s in servers:
            s.close()
