"""hypothesis: arbitrary frames and headers never crash the server, never stop it answering a
well-formed client, and never reach a rig unless they form a valid drive.

Bounded (derandomized, ~300 examples over three strategies) so the file runs in seconds.
"""
import uuid

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import RigServer
from bridge.fuzz import StrictEcho

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def bus():
    rig = StrictEcho()   # the one strict test rig (bridge.fuzz): echo on -10..10, records invalid calls
    server = RigServer({"echo": rig}, f"inproc://fuzz-{uuid.uuid4().hex}").start()
    ctx = zmq.Context.instance()
    fuzzer = ctx.socket(zmq.DEALER)
    fuzzer.setsockopt(zmq.LINGER, 0)
    fuzzer.connect(server.endpoints[0])
    probe = ctx.socket(zmq.DEALER)
    probe.setsockopt(zmq.LINGER, 0)
    probe.connect(server.endpoints[0])
    yield server, rig, fuzzer, probe
    fuzzer.close(linger=0)
    probe.close(linger=0)
    server.close()


def still_serving(server, probe):
    """A well-formed client still gets its answer; no internal error; nothing invalid reached the rig."""
    rid = uuid.uuid4().hex
    probe.send(msgpack.packb({"v": 1, "id": rid, "op": "ping"}))
    deadline = 50
    while deadline:
        assert probe.poll(5000), "the server stopped answering"
        head = msgpack.unpackb(probe.recv_multipart()[0])
        if head.get("id") == rid:
            assert head["ok"] is True
            break
        deadline -= 1
    assert server._thread.is_alive()
    assert server.status()["errors"].get("INTERNAL", 0) == 0
    assert server.rigs["echo"].violations == []


def drain(sock):
    while sock.poll(0):
        sock.recv_multipart()


values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
KEYS = st.sampled_from(["v", "id", "op", "rig", "args", "inputs", "reset", "seed", "$nd", "dtype", "shape"])


@SETTINGS
@given(frames=st.lists(st.binary(max_size=64), min_size=0, max_size=5))
def test_random_bytes(bus, frames):
    server, rig, fuzzer, probe = bus
    if frames:
        fuzzer.send_multipart(frames)
    still_serving(server, probe)
    drain(fuzzer)


@SETTINGS
@given(header=st.dictionaries(KEYS, values, max_size=6), bufs=st.lists(st.binary(max_size=32), max_size=3))
def test_random_headers(bus, header, bufs):
    server, rig, fuzzer, probe = bus
    fuzzer.send_multipart([msgpack.packb(header, use_bin_type=True), *bufs])
    still_serving(server, probe)
    drain(fuzzer)


@SETTINGS
@given(op=st.sampled_from(["drive", "drive", "drive", "describe", "hello", "ping", "Drive", ""]),
       rig_name=st.sampled_from(["echo", "echo", "ECHO", "", None]),
       dtype=st.sampled_from(["<f8", "<f4", "<i8", ">f8", "|u1", "<c16", "x"]),
       shape=st.one_of(st.tuples(st.integers(1, 3), st.integers(1, 6), st.just(1)).map(list),
                       st.lists(st.integers(-2, 4), max_size=4)),
       nd=st.sampled_from([0, 0, 1, -1]),
       payload=st.binary(max_size=256), fit=st.sampled_from([True, True, False]),
       reset=st.sampled_from([True, False, 0, None, "yes"]),
       seed=st.one_of(st.none(), st.integers(-5, 2**65), st.floats(allow_nan=True)),
       scale=st.sampled_from([1.0, 1.0, 1e3, float("nan")]))
def test_near_valid_drives(bus, op, rig_name, dtype, shape, nd, payload, fit, reset, seed, scale):
    server, rig, fuzzer, probe = bus
    header = {"v": 1, "id": uuid.uuid4().hex, "op": op,
              "args": {"inputs": {"$nd": nd, "dtype": dtype, "shape": shape}, "reset": reset, "seed": seed}}
    if rig_name is not None:
        header["rig"] = rig_name
    if dtype in ("<f8", "<f4", "<i8") and all(d >= 0 for d in shape):
        n = int(np.prod(shape)) if fit else len(payload)
        raw = np.resize(np.frombuffer(payload or b"\x01", dtype=np.uint8), n).astype(np.float64)
        with np.errstate(invalid="ignore"):
            payload = (raw / 26.0 * scale).astype(dtype).tobytes()
    fuzzer.send_multipart([msgpack.packb(header), payload])
    still_serving(server, probe)
    drain(fuzzer)


def test_valid_drives_did_reach_the_rig(bus):
    """Runs after the fuzzing above: some generated drives were valid, and only those arrived."""
    server, rig, _, _ = bus
    assert rig.drive_calls > 0 and rig.violations == []
