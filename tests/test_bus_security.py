"""Issue 16's findings, one regression test each, driven by a raw pyzmq client (tests/_raw.py).

1. one peer never gets another's results (reply cache keyed by peer + id + request digest);
2. SIGTERM during a long drive makes the rig safe and closes it; exit non-zero when it cannot;
3. memory bounded by configuration (drive size limit, per-peer queue);
4. leases checked when a drive runs, tokens bound to the peer, token-less leases owned by one peer;
5. a key removed from the allow-list is refused at the next connection;
6. secret key files are 0600 from the first byte, their folder 0700;
7. shapes with a zero and a huge dimension are answered (BAD_REQUEST), also inside lock args;
8. the depth limit holds under unknown keys; repeats of a running id are bounded.

Ordering uses events (a gate rig) and socket monitors, never sleeps.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid

import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from bridge import RigClient, RigServer
from bridge.auth import Security, generate
from bridge.backends.testrigs import EchoRig, LeakyRig
from bridge.server import MAX_JOINED
from nado.bench.security import SERVE   # the marked rig server (echo + realtime NRA)
from _raw import drive_frames, peer_id, raw_call, raw_socket, reply


class GateRig(EchoRig):
    """An echo rig whose drives wait for ``gate`` (set by the test); ``started`` is set per drive."""

    def __init__(self, name: str = "gate", **kw) -> None:
        super().__init__(name, **kw)
        self.gate, self.started = threading.Event(), threading.Event()

    def drive(self, inputs, *, reset=True, seed=None):
        self.started.set()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        return super().drive(inputs, reset=reset, seed=seed)


@pytest.fixture()
def bus():
    rigs = {"leaky": LeakyRig(seed=3), "gate": GateRig(), "echo": EchoRig()}
    srv = RigServer(rigs, f"inproc://sec-{uuid.uuid4().hex}", inline=False, peer_queue=4).start()
    yield srv, rigs
    rigs["gate"].gate.set()
    srv.close()


def _lock_frames(lease_s=30.0, client=None, **extra):
    head = {"v": 1, "id": uuid.uuid4().hex, "op": "lock", "rig": "gate", "args": {"lease_s": lease_s, **extra}}
    if client is not None:
        head["client"] = client
    return [msgpack.packb(head)]


# ---- 1. isolation between peers ------------------------------------------------------------------

def test_another_peers_id_is_a_new_request_and_a_changed_request_is_refused(bus):
    srv, rigs = bus
    ep = srv.endpoints[0]
    alice, bob = peer_id(), peer_id()
    rid = uuid.uuid4().hex
    ua, ub = np.full((1, 6, 1), 0.5), np.full((1, 6, 1), -0.25)
    ha, ba = raw_call(ep, drive_frames("leaky", ua, rid=rid, seed=1), peer=alice)
    hb, bb = raw_call(ep, drive_frames("leaky", ub, rid=rid, seed=2), peer=bob)
    assert ha["ok"] and hb["ok"]
    ref = LeakyRig(seed=3).drive(ub, seed=2).outputs
    got_b = np.frombuffer(bb[0], "<f8").reshape(1, 6, -1)
    np.testing.assert_array_equal(got_b, ref)                        # bob's own drive, not alice's
    assert not np.array_equal(got_b, np.frombuffer(ba[0], "<f8").reshape(1, 6, -1))
    # alice reusing her id for another request (other inputs, same op and rig) is refused
    h, _ = raw_call(ep, drive_frames("leaky", ub, rid=rid, seed=1), peer=alice)
    assert not h["ok"] and h["error"]["code"] == "BAD_REQUEST"
    # her true retry is answered from the cache, byte for byte
    h2, b2 = raw_call(ep, drive_frames("leaky", ua, rid=rid, seed=1), peer=alice)
    assert h2 == ha and b2 == ba


def test_a_running_id_is_not_joined_by_another_peer_and_a_lease_still_holds(bus):
    srv, rigs = bus
    ep, gate = srv.endpoints[0], rigs["gate"]
    alice, bob = peer_id(), peer_id()
    rid = uuid.uuid4().hex
    sa = raw_socket(ep, peer=alice)
    sb = raw_socket(ep, peer=bob)
    try:
        sa.send_multipart(drive_frames("gate", np.full((1, 3, 1), 1.0), rid=rid))
        assert gate.started.wait(10)
        sb.send_multipart(drive_frames("gate", np.full((1, 3, 1), 7.0), rid=rid))
        gate.gate.set()
        ha, ba = reply(sa)
        hb, bb = reply(sb)
        assert ha["ok"] and hb["ok"]
        assert np.frombuffer(ba[0], "<f8").tolist() == [1.0] * 3
        assert np.frombuffer(bb[0], "<f8").tolist() == [7.0] * 3    # bob's request ran as his own
        # alice drives and locks; bob sending alice's id gets BUSY, not alice's cached outputs
        rid2 = uuid.uuid4().hex
        assert raw_call(ep, drive_frames("gate", np.full((1, 3, 1), 2.0), rid=rid2), peer=alice)[0]["ok"]
        h, _ = raw_call(ep, _lock_frames(client="tok-a"), peer=alice)
        assert h["ok"]
        h, b = raw_call(ep, drive_frames("gate", np.full((1, 3, 1), 2.0), rid=rid2), peer=bob)
        assert h["error"]["code"] == "BUSY" and not b
    finally:
        sa.close(linger=0)
        sb.close(linger=0)


# ---- 2. shutdown makes the rig safe ----------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("make_safe", ["ok", "fail"])
def test_sigterm_during_a_long_drive_makes_the_rig_safe(tmp_path, make_safe):
    endpoint = f"ipc://{tmp_path}/long.sock"
    proc = subprocess.Popen([sys.executable, "-c", SERVE, endpoint, make_safe], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    sock = None
    try:
        assert proc.stdout.readline().strip() == "ready"
        sock = raw_socket(endpoint)
        # 1,280 steps of 15.6 ms: a drive of about 20 s of wall time on the realtime clock
        sock.send_multipart(drive_frames("nra", np.full((1, 1280, 1), 40.0), seed=1))
        assert proc.stdout.readline().strip() == "driving"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if sock is not None:
            sock.close(linger=0)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.split("\n")
    assert "made safe" in lines and "closed" in lines
    if make_safe == "ok":
        assert proc.returncode == 0 and lines[-2] == "stopped"
    else:
        assert proc.returncode != 0 and "could not be made safe" in err and "stopped" not in lines


# ---- 3. bounded memory ----------------------------------------------------------------------------

def test_drive_size_limits_station_wide_and_per_rig():
    rigs = {"a": EchoRig("a"), "b": EchoRig("b")}
    with RigServer(rigs, f"inproc://lim-{uuid.uuid4().hex}", max_drive_elements=100,
                   rig_max_drive_elements={"b": 10}) as srv:
        ep = srv.endpoints[0]
        ok, _ = raw_call(ep, drive_frames("a", np.zeros((2, 50, 1))))
        assert ok["ok"]
        h, _ = raw_call(ep, drive_frames("a", np.zeros((2, 51, 1))))
        assert h["error"]["code"] == "BAD_INPUT" and "max_drive_elements = 100" in h["error"]["message"]
        h, _ = raw_call(ep, drive_frames("b", np.zeros((1, 11, 1))))
        assert h["error"]["code"] == "BAD_INPUT" and "max_drive_elements = 10" in h["error"]["message"]
        assert rigs["a"].drive_calls == 1 and rigs["b"].drive_calls == 0


def test_one_peer_cannot_queue_more_than_its_share(bus):
    srv, rigs = bus
    gate = rigs["gate"]
    sock = raw_socket(srv.endpoints[0], peer=peer_id())
    try:
        for _ in range(10):
            sock.send_multipart(drive_frames("gate", np.ones((1, 2, 1))))
        busy = [reply(sock)[0] for _ in range(6)]    # beyond peer_queue = 4: answered at once
        assert all(h["error"]["code"] == "BUSY" and "per-peer limit" in h["error"]["message"] for h in busy)
        gate.gate.set()
        done = [reply(sock)[0] for _ in range(4)]
        assert all(h["ok"] for h in done)
    finally:
        sock.close(linger=0)
    # another peer was never refused meanwhile
    assert raw_call(srv.endpoints[0], drive_frames("echo", np.ones((1, 2, 1))))[0]["ok"]


# ---- 4. leases ------------------------------------------------------------------------------------

def test_drives_queued_before_a_lock_do_not_run_inside_the_lease(bus):
    srv, rigs = bus
    ep, gate = srv.endpoints[0], rigs["gate"]
    alice, bob = peer_id(), peer_id()
    sb = raw_socket(ep, peer=bob)
    try:
        sb.send_multipart(drive_frames("gate", np.ones((1, 2, 1))))         # runs (held at the gate)
        assert gate.started.wait(10)
        for _ in range(2):
            sb.send_multipart(drive_frames("gate", np.ones((1, 2, 1))))     # queued
        while srv.status()["rigs"]["gate"]["waiting"] < 3:                 # both are in the rig's queue
            pass
        h, _ = raw_call(ep, _lock_frames(client="tok-a"), peer=alice)
        assert h["ok"]
        gate.gate.set()
        codes = [reply(sb)[0] for _ in range(3)]
        assert codes[0]["ok"]
        assert [h["error"]["code"] for h in codes[1:]] == ["BUSY", "BUSY"]
        assert rigs["gate"].drive_calls == 1
    finally:
        sb.close(linger=0)


def test_a_token_is_bound_to_its_peer_and_a_tokenless_lease_to_one_peer(bus):
    srv, rigs = bus
    rigs["gate"].gate.set()
    ep = srv.endpoints[0]
    alice, bob = peer_id(), peer_id()
    assert raw_call(ep, _lock_frames(client="tok-a"), peer=alice)[0]["ok"]
    h, _ = raw_call(ep, drive_frames("gate", np.ones((1, 2, 1)), client="tok-a"), peer=bob)
    assert h["error"]["code"] == "BUSY"
    unlock = {"v": 1, "id": uuid.uuid4().hex, "op": "unlock", "rig": "gate", "client": "tok-a"}
    assert raw_call(ep, [msgpack.packb(unlock)], peer=bob)[0]["error"]["code"] == "BUSY"
    assert raw_call(ep, drive_frames("gate", np.ones((1, 2, 1)), client="tok-a"), peer=alice)[0]["ok"]
    unlock["id"] = uuid.uuid4().hex
    assert raw_call(ep, [msgpack.packb(unlock)], peer=alice)[0]["result"] == {"released": True}
    # without tokens: the lease is alice's alone
    assert raw_call(ep, _lock_frames(), peer=alice)[0]["ok"]
    assert raw_call(ep, drive_frames("gate", np.ones((1, 2, 1))), peer=bob)[0]["error"]["code"] == "BUSY"
    assert raw_call(ep, drive_frames("gate", np.ones((1, 2, 1))), peer=alice)[0]["ok"]


# ---- 5. and 6. keys ---------------------------------------------------------------------------------

def _wait_handshake(sock: zmq.Socket) -> int:
    """The first handshake outcome event on ``sock`` (succeeded or failed), via its monitor."""
    mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                  | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    try:
        if not mon.poll(10_000):
            raise AssertionError("no handshake within 10 s")
        return recv_monitor_message(mon)["event"]
    finally:
        sock.disable_monitor()
        mon.close(linger=0)


@pytest.mark.e2e
def test_a_removed_key_is_refused_at_the_next_connection(tmp_path):
    import zmq.auth
    generate("server", tmp_path / "server")
    for who in ("alice", "bob"):
        generate(who, tmp_path / who)
    clients = tmp_path / "clients"
    clients.mkdir()
    for who in ("alice", "bob"):
        shutil.copy(tmp_path / who / f"{who}.key", clients)
    sec = Security(server_key=tmp_path / "server" / "server.key_secret", clients=clients, allow_plain=False)
    server_pub, _ = zmq.auth.load_certificate(str(tmp_path / "server" / "server.key"))

    def keys(who):
        pub, sec_ = zmq.auth.load_certificate(str(tmp_path / who / f"{who}.key_secret"))
        return pub, sec_, server_pub

    with RigServer({"echo": EchoRig()}, "tcp://127.0.0.1:*", security=sec) as srv:
        ep = srv.endpoints[0]
        for who in ("alice", "bob"):
            s = raw_socket(ep, curve=keys(who), context=srv.context)
            try:
                assert _wait_handshake(s) == zmq.EVENT_HANDSHAKE_SUCCEEDED
            finally:
                s.close(linger=0)
        (clients / "bob.key").unlink()
        s = raw_socket(ep, curve=keys("bob"), context=srv.context)
        try:
            assert _wait_handshake(s) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        finally:
            s.close(linger=0)
        h, _ = raw_call(ep, drive_frames("echo", np.ones((1, 2, 1))), curve=keys("alice"))
        assert h["ok"]


def test_secret_key_file_is_private_from_its_first_byte(tmp_path, monkeypatch):
    import bridge.auth as auth
    modes = {}
    real_write = os.write

    def spy(fd, data):
        modes.setdefault(os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_mode & 0o777)
        return real_write(fd, data)

    monkeypatch.setattr(auth.os, "write", spy)
    old = os.umask(0o022)
    try:
        public, secret = generate("carol", tmp_path / "keys")
    finally:
        os.umask(old)
    assert modes[str(secret)] == 0o600 and (os.stat(secret).st_mode & 0o777) == 0o600
    assert (os.stat(tmp_path / "keys").st_mode & 0o777) == 0o700
    assert (os.stat(public).st_mode & 0o777) == 0o644


# ---- 7. and 8. decoding ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [[0, 2**62, 1], [2**64 - 1, 0, 1], [0, 2**40, 2**40], [1, 0, 2**63]])
def test_zero_and_huge_dimensions_are_answered(bus, shape):
    srv, rigs = bus
    ep = srv.endpoints[0]
    head = {"v": 1, "id": uuid.uuid4().hex, "op": "drive", "rig": "echo",
            "args": {"inputs": {"$nd": 0, "dtype": "<f8", "shape": shape}}}
    h, _ = raw_call(ep, [msgpack.packb(head), b""])
    assert h["ok"] is False and h["error"]["code"] == "BAD_REQUEST" and h["id"] == head["id"]
    lock = {"v": 1, "id": uuid.uuid4().hex, "op": "lock", "rig": "gate",
            "args": {"lease_s": 1.0, "holder": {"$nd": 0, "dtype": "<i8", "shape": shape}}}
    h, _ = raw_call(ep, [msgpack.packb(lock), b""])
    assert h["ok"] is False and h["error"]["code"] == "BAD_REQUEST"
    assert srv.status()["errors"].get("INTERNAL", 0) == 0


def test_depth_limit_holds_under_unknown_keys_and_repeats_are_bounded(bus):
    srv, rigs = bus
    ep, gate = srv.endpoints[0], rigs["gate"]
    deep: object = 1
    for _ in range(20):
        deep = {"k": deep}
    head = {"v": 1, "id": uuid.uuid4().hex, "op": "ping", "later": deep}
    h, _ = raw_call(ep, [msgpack.packb(head)])
    assert h["error"]["code"] == "BAD_REQUEST" and "deeper than 16" in h["error"]["message"]
    sock = raw_socket(ep, peer=peer_id())
    try:
        frames = drive_frames("gate", np.ones((1, 2, 1)))
        sock.send_multipart(frames)
        assert gate.started.wait(10)
        n = 3 * MAX_JOINED
        for _ in range(n):
            sock.send_multipart(frames)
        early = [reply(sock)[0] for _ in range(n - MAX_JOINED)]   # refused at once, not queued
        assert all(h["error"]["code"] == "BUSY" for h in early)
        gate.gate.set()
        late = [reply(sock)[0] for _ in range(MAX_JOINED + 1)]
        assert all(h["ok"] for h in late) and gate.drive_calls == 1
    finally:
        sock.close(linger=0)


def test_shutdown_stops_a_daq_drive_and_ramps_the_coils_down():
    """The DAQ rig behind a server: close() interrupts the drive between experiments, then makes it safe."""
    from bridge.backends.daq.fake import FakeTaskFactory
    from bridge.backends.daq.nra import DaqNRARig
    from bridge.limits import guard
    from emulator.nra import NRARig

    cal = [12.0, 12.0]
    nra = NRARig(seed=5)

    def device(amps):   # the acquisition waits until the server asks the drive to stop
        started.set()
        daq._abort.wait(30)
        return nra.drive(np.clip(amps, 0.0, 80.0)[None, :, None], seed=5).outputs[0, :, 0]

    started = threading.Event()
    fake = FakeTaskFactory(device, oe_per_volt=cal)
    daq = DaqNRARig("nra", oe_per_volt=cal, task_factory=fake)
    rig = guard(daq, {"max_field_oe": 80.0, "max_coil_v": 8.0, "max_slew_oe_per_s": 150000.0})
    srv = RigServer({"nra": rig}, f"inproc://daq-{uuid.uuid4().hex}", shutdown_s=5.0).start()
    sock = raw_socket(srv.endpoints[0])
    try:
        sock.send_multipart(drive_frames("nra", np.full((3, 2, 1), 30.0)))
        assert started.wait(30)
        srv.close()
    finally:
        sock.close(linger=0)
    assert srv.unsafe == {} and np.all(fake.ao_now == 0.0)
    assert srv.status()["rigs"]["nra"]["drives"] == 1


def test_a_client_that_never_reads_holds_a_bounded_number_of_replies(bus):
    srv, rigs = bus
    ep = srv.endpoints[0]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.connect(ep)
    n = 80
    try:
        for _ in range(n):
            sock.send_multipart(drive_frames("echo", np.ones((1, 2, 1))))
        with RigClient(ep, "echo", timeout_s=10) as probe:   # the server read and answered all n
            while True:                                      # (and goes on serving others meanwhile)
                echo = probe.status(rig="echo")["rigs"]["echo"]
                if echo["requests"] >= n and echo["waiting"] == 0:
                    break
        dropped = srv.status()["replies_dropped"]
        assert dropped >= n - 4 * (16 + 1)    # at most the pipe's high-water marks were kept
        kept = 0
        while sock.poll(0):
            sock.recv_multipart()
            kept += 1
        assert kept + dropped == n and kept <= 4 * (16 + 1)
    finally:
        sock.close(linger=0)
