"""Wire protocol v1 through raw pyzmq sockets, messages built by hand from bridge/PROTOCOL.md.

Deliberately avoids bridge.protocol and bridge.client: msgpack + numpy + zmq only.
Every error code the server can produce is reached (the last test checks that).
"""
import uuid

import msgpack
import numpy as np
import pytest
import zmq

from bridge import RigServer
from bridge.rig import DriveResult
from bridge.backends.testrigs import EchoRig, LeakyRig
from _raw import raw_call

CODES = {"BAD_REQUEST", "VERSION", "UNKNOWN_OP", "UNKNOWN_RIG", "BAD_INPUT", "OUT_OF_RANGE",
         "BUSY", "RIG_FAULT", "TIMEOUT", "INTERNAL"}
SEEN: set[str] = set()


class FaultyRig(EchoRig):
    """Fails on purpose, chosen by the first input value: 1 RuntimeError, 2 TimeoutError, 3 bad shape."""

    def drive(self, inputs, *, reset=True, seed=None):
        kind = float(np.asarray(inputs).flat[0])
        self.drive_calls += 1
        if kind == 1:
            raise RuntimeError("coil supply tripped")
        if kind == 2:
            raise TimeoutError("DAQ read timed out")
        if kind == 3:
            return DriveResult(np.zeros((1, 1, 7)), np.zeros((1, 7)), 0.0)
        return super().drive(inputs, reset=reset, seed=seed)


class OddDescribeRig(EchoRig):
    """describe() works at start, then returns something msgpack cannot carry."""

    calls = 0

    def describe(self):
        d = super().describe()
        self.calls += 1
        if self.calls > 1:
            d["odd"] = object()
        return d


@pytest.fixture(scope="module")
def server():
    rigs = {"echo": EchoRig(), "leaky": LeakyRig(seed=1), "faulty": FaultyRig(name="faulty"),
            "odd": OddDescribeRig(name="odd"), "slow": EchoRig(name="slow", latency_s=0.3)}
    srv = RigServer(rigs, f"inproc://proto-{uuid.uuid4().hex}", queue_size=1).start()
    yield srv
    srv.close()


def call(server, frames, kind=zmq.REQ, timeout_s=5.0, peer=None):
    """Send frames on a fresh socket (tests/_raw.py); return (header dict, buffer frames) of the reply.

    ``peer``: 16 bytes naming this caller across sockets (routing id 0x01 + peer + 4 bytes).
    """
    head, bufs = raw_call(server.endpoints[0], frames, kind, peer=peer, timeout_s=timeout_s)
    assert head["v"] == 1 and isinstance(head["ok"], bool)
    if not head["ok"]:
        assert set(head["error"]) == {"code", "message"} and head["error"]["message"]
        SEEN.add(head["error"]["code"])
    return head, bufs


def hdr(op, rig=None, args=None, **extra):
    h = {"v": 1, "id": uuid.uuid4().hex, "op": op}
    if rig is not None:
        h["rig"] = rig
    if args is not None:
        h["args"] = args
    h.update(extra)
    return h


def drive_frames(rig, arr, dtype="<f8", shape=None, **args):
    a = np.ascontiguousarray(arr, dtype=dtype if dtype in ("<f4", "<f8", "<i8") else None)
    ref = {"$nd": 0, "dtype": dtype, "shape": list(shape if shape is not None else a.shape)}
    h = hdr("drive", rig, {"inputs": ref, "reset": True, "seed": None, **args})
    return [msgpack.packb(h), a.tobytes()]


def err(reply):
    head, _ = reply
    assert head["ok"] is False, head
    return head["error"]["code"]


def test_hello_ping_describe(server):
    head, bufs = call(server, [msgpack.packb(hdr("hello"))])
    assert head["ok"] and bufs == []
    assert head["result"]["protocol"] == 1
    assert sorted(head["result"]["rigs"]) == sorted(server.rigs)
    assert isinstance(head["result"]["server"], str)
    assert call(server, [msgpack.packb(hdr("ping"))])[0]["ok"]
    d = call(server, [msgpack.packb(hdr("describe", "leaky"))])[0]["result"]
    assert {"name", "kind", "backend", "source", "emulated", "input", "output", "step_s"} <= set(d)
    assert d["input"]["dims"] == [1] and d["input"]["min"] < d["input"]["max"]


def test_id_is_echoed(server):
    h = hdr("ping")
    assert call(server, [msgpack.packb(h)])[0]["id"] == h["id"]


@pytest.mark.parametrize("dtype", ["<f8", "<f4", "<i8"])
def test_drive_echo_arrays_as_frames(server, dtype):
    x = np.arange(12).reshape(2, 6, 1)
    head, bufs = call(server, drive_frames("echo", x, dtype))
    assert head["ok"], head
    res = head["result"]
    out, init = res["outputs"], res["initial"]
    assert out["dtype"] == "<f8" and out["shape"] == [2, 6, 1]
    assert init["shape"] == [2, 1] and {out["$nd"], init["$nd"]} == {0, 1}
    got = np.frombuffer(bufs[out["$nd"]], dtype=out["dtype"]).reshape(out["shape"])
    np.testing.assert_array_equal(got, x)
    assert isinstance(res["instrument_s"], float)


def test_dealer_without_delimiter(server):
    head, bufs = call(server, drive_frames("leaky", np.zeros((1, 4, 1))), kind=zmq.DEALER)
    assert head["ok"] and len(bufs) == 2


def test_message_without_header_is_dropped_and_server_goes_on(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoints[0])
    try:
        sock.send(b"")  # [identity, b""]: a delimiter and nothing else
        h = hdr("ping")
        sock.send(msgpack.packb(h))
        assert sock.poll(5000)
        assert msgpack.unpackb(sock.recv_multipart()[0])["id"] == h["id"]
        assert not sock.poll(100)  # the empty message got no reply
    finally:
        sock.close(linger=0)


@pytest.mark.parametrize("frames, code, id_nil", [
    ([b"\xc1\xc1garbage"], "BAD_REQUEST", True),
    ([msgpack.packb([1, 2, 3])], "BAD_REQUEST", True),
    ([msgpack.packb({"v": 1, "op": "ping"})], "BAD_REQUEST", True),
    ([msgpack.packb({"v": 1, "id": 7, "op": "ping"})], "BAD_REQUEST", True),
    ([msgpack.packb({"v": 1, "id": "x" * 500, "op": "ping"})], "BAD_REQUEST", True),
    ([msgpack.packb({"id": "a", "op": "ping"})], "BAD_REQUEST", False),
    ([msgpack.packb({"v": "1", "id": "a", "op": "ping"})], "BAD_REQUEST", False),
    ([msgpack.packb({"v": 2, "id": "a", "op": "ping"})], "VERSION", False),
    ([msgpack.packb({"v": 1, "id": "a", "op": "reboot"})], "UNKNOWN_OP", False),
    ([msgpack.packb({"v": 1, "id": "a", "op": 3})], "BAD_REQUEST", False),
    ([msgpack.packb({"v": 1, "id": "a", "op": "ping", "args": [1]})], "BAD_REQUEST", False),
    ([msgpack.packb({"v": 1, "id": "a", "op": "ping", "args": {"x": 1}})], "BAD_REQUEST", False),
    ([msgpack.packb({"v": 1, "id": "a", "op": "ping"}), b"stray"], "BAD_REQUEST", False),
    ([msgpack.packb({"v": 1, "id": "a", "op": "ping", "args": {"t": msgpack.ExtType(5, b"x")}})],
     "BAD_REQUEST", True),
])
def test_malformed_headers(server, frames, code, id_nil):
    head, _ = call(server, frames)
    assert not head["ok"] and head["error"]["code"] == code, head
    assert (head["id"] is None) == id_nil


def test_unknown_rig(server):
    assert err(call(server, [msgpack.packb(hdr("describe", "nope"))])) == "UNKNOWN_RIG"
    assert err(call(server, [msgpack.packb(hdr("describe"))])) == "UNKNOWN_RIG"
    head, _ = call(server, drive_frames("nope", np.zeros((1, 1, 1))))
    assert "echo" in head["error"]["message"]  # names the rigs there are


def test_bad_array_references(server):
    x = np.zeros((1, 3, 1))
    good = drive_frames("echo", x)
    # frame size does not match shape * itemsize
    assert err(call(server, [good[0], good[1][:-8]])) == "BAD_REQUEST"
    # $nd points past the frames
    h = hdr("drive", "echo", {"inputs": {"$nd": 1, "dtype": "<f8", "shape": [1, 3, 1]}})
    assert err(call(server, [msgpack.packb(h), x.tobytes()])) == "BAD_REQUEST"
    # an extra frame nobody references
    assert err(call(server, [*good, b"\0" * 8])) == "BAD_REQUEST"
    # a bad shape
    h = hdr("drive", "echo", {"inputs": {"$nd": 0, "dtype": "<f8", "shape": [-1, 3]}})
    assert err(call(server, [msgpack.packb(h), x.tobytes()])) == "BAD_REQUEST"
    # extra keys in the reference
    h = hdr("drive", "echo", {"inputs": {"$nd": 0, "dtype": "<f8", "shape": [1, 3, 1], "x": 1}})
    assert err(call(server, [msgpack.packb(h), x.tobytes()])) == "BAD_REQUEST"


@pytest.mark.parametrize("dtype", [">f8", "|O", "<f2", "<u8", "float64"])
def test_refused_dtypes(server, dtype):
    h = hdr("drive", "echo", {"inputs": {"$nd": 0, "dtype": dtype, "shape": [1, 1, 1]}})
    assert err(call(server, [msgpack.packb(h), b"\0" * 8])) == "BAD_INPUT"


def test_bad_drive_args(server):
    x = np.zeros((1, 2, 1))
    assert err(call(server, [msgpack.packb(hdr("drive", "echo", {}))])) == "BAD_REQUEST"
    assert err(call(server, [msgpack.packb(hdr("drive", "echo", {"inputs": [[[0.0]]]}))])) == "BAD_INPUT"
    assert err(call(server, drive_frames("echo", x, reset=1))) == "BAD_REQUEST"
    assert err(call(server, drive_frames("echo", x, seed=-1))) == "BAD_REQUEST"
    assert err(call(server, drive_frames("echo", x, seed=1.5))) == "BAD_REQUEST"
    assert err(call(server, drive_frames("echo", x, speed=2))) == "BAD_REQUEST"


def test_bad_inputs_never_reach_the_rig(server):
    leaky = server.rigs["leaky"]
    before = leaky.drive_calls
    for x in (np.zeros((2, 3)), np.zeros((1, 3, 2)), np.zeros((0, 3, 1)),
              np.array([[[0.0], [np.nan]]]), np.array([[[np.inf]]])):
        assert err(call(server, drive_frames("leaky", x))) == "BAD_INPUT"
    assert err(call(server, drive_frames("leaky", np.full((1, 3, 1), 1.5)))) == "OUT_OF_RANGE"
    assert leaky.drive_calls == before


def test_rig_failures_map_to_codes(server):
    assert err(call(server, drive_frames("faulty", np.full((1, 1, 1), 1.0)))) == "RIG_FAULT"
    assert err(call(server, drive_frames("faulty", np.full((1, 1, 1), 2.0)))) == "TIMEOUT"
    head, _ = call(server, drive_frames("faulty", np.full((1, 1, 1), 3.0)))
    assert head["error"]["code"] == "RIG_FAULT" and "expected" in head["error"]["message"]
    assert call(server, drive_frames("faulty", np.zeros((1, 1, 1))))[0]["ok"]  # and it still serves


def test_unencodable_reply_is_internal(server):
    assert err(call(server, [msgpack.packb(hdr("describe", "odd"))])) == "INTERNAL"


def test_busy_when_the_rig_queue_is_full(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoints[0])
    try:
        for _ in range(3):
            sock.send_multipart(drive_frames("slow", np.zeros((1, 1, 1))))
        codes = []
        for _ in range(3):
            assert sock.poll(5000)
            head = msgpack.unpackb(sock.recv_multipart()[0])
            codes.append("ok" if head["ok"] else head["error"]["code"])
            if not head["ok"]:
                SEEN.add(head["error"]["code"])
        assert sorted(codes) == ["BUSY", "BUSY", "ok"]
    finally:
        sock.close(linger=0)


def test_repeated_id_is_answered_from_the_cache(server):
    leaky = server.rigs["leaky"]
    frames = drive_frames("leaky", np.zeros((1, 5, 1)))
    before = leaky.drive_calls
    me = uuid.uuid4().bytes   # one peer, two sockets (a retry from a fresh socket)
    first, b1 = call(server, frames, peer=me)
    again, b2 = call(server, frames, peer=me)
    assert leaky.drive_calls == before + 1
    assert first == again and b1 == b2
    # the same id for another request is refused
    h = msgpack.unpackb(frames[0])
    h.pop("args")
    h["op"] = "describe"
    assert err(call(server, [msgpack.packb(h)], peer=me)) == "BAD_REQUEST"


def test_every_error_code_was_reached():
    """Runs last in this file: the tests above reached every code of the spec."""
    assert SEEN == CODES, f"not reached: {CODES - SEEN}"


def _spec():
    from pathlib import Path
    import bridge
    return (Path(bridge.__file__).parent / "PROTOCOL.md").read_text()


def test_spec_hex_example_is_the_msgpack_of_its_header():
    text = _spec()
    block = text.split("msgpack bytes (hex), for checking an encoder:\n\n```\n")[1].split("```")[0]
    head = msgpack.unpackb(bytes.fromhex(" ".join(block.split())))
    assert head == {"v": 1, "id": "c1", "op": "drive", "rig": "nra",
                    "args": {"inputs": {"$nd": 0, "dtype": "<f8", "shape": [2, 3, 1]}, "reset": True, "seed": 7}}


def test_spec_python_client_example_runs(tmp_path):
    text = _spec()
    code = text.split("```python\n")[1].split("```")[0]
    from bridge.backends.testrigs import EchoRig
    rig = EchoRig("nra", lo=0.0, hi=80.0)
    with RigServer({"nra": rig}, "tcp://127.0.0.1:*") as srv:
        code = code.replace("tcp://rigpc:5555", srv.endpoints[0])
        code += "\nsock.close(linger=0)\n"
        scope: dict = {}
        exec(compile(code, "PROTOCOL.md", "exec"), scope)
    np.testing.assert_allclose(scope["outputs"][0, :, 0], np.linspace(0, 80, 20))
