"""Hardened input: ZMQ_MAXMSGSIZE drops oversized messages (the server goes on serving), header and
frame limits, and no pickle anywhere in the code (np.load without allow_pickle, torch.load with
weights_only=True, no recv_pyobj)."""
import pathlib
import re
import uuid

import msgpack
import numpy as np
import pytest
import zmq

from bridge import RigClient, RigServer
from bridge import protocol as P
from bridge.backends.testrigs import EchoRig

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_oversized_message_is_dropped_and_the_server_goes_on():
    rig = EchoRig("e")
    with RigServer({"e": rig}, "tcp://127.0.0.1:*", max_message_bytes=4096) as server:
        ctx = zmq.Context.instance()
        big = ctx.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        big.connect(server.endpoints[0])
        x = np.zeros((1, 1024, 1))                       # 8 KiB frame > 4 KiB limit
        head = {"v": 1, "id": uuid.uuid4().hex, "op": "drive", "rig": "e",
                "args": {"inputs": {"$nd": 0, "dtype": "<f8", "shape": [1, 1024, 1]}}}
        big.send_multipart([msgpack.packb(head), x.tobytes()])
        assert big.poll(500) == 0                        # no reply: the connection was dropped
        big.close(linger=0)
        with RigClient(server.endpoints[0], "e", timeout_s=5) as c:
            assert c.drive(np.zeros((1, 8, 1))).outputs.shape == (1, 8, 1)
        assert rig.drive_calls == 1


def test_header_and_frame_limits():
    with pytest.raises(P.ProtocolError, match="exceeds the limit"):
        P.unpack_header(msgpack.packb({"x": "a" * (P.MAX_HEADER_BYTES + 1)}))
    with pytest.raises(P.ProtocolError, match="buffer frames"):
        P.resolve({}, [b""] * (P.MAX_FRAMES + 1))
    with pytest.raises(P.ProtocolError, match="ext"):
        P.unpack_header(msgpack.packb({"x": msgpack.ExtType(1, b"x")}))
    with pytest.raises(P.ProtocolError, match="holds 7 bytes"):
        P.resolve({"a": {"$nd": 0, "dtype": "<f8", "shape": [1]}}, [b"1234567"])
    with pytest.raises(P.ProtocolError, match="not accepted"):
        P.resolve({"a": {"$nd": 0, "dtype": "|O", "shape": [1]}}, [b"12345678"])
    deep = {}
    d = deep
    for _ in range(P.MAX_DEPTH + 2):
        d["x"] = {}
        d = d["x"]
    d["y"] = [1]
    with pytest.raises(P.ProtocolError, match="nests deeper"):
        P.resolve(deep, [])


def test_no_pickle_anywhere():
    bad = []
    for path in [*ROOT.glob("bridge/**/*.py"), *ROOT.glob("nado/**/*.py"), *ROOT.glob("emulator/**/*.py")]:
        text = path.read_text()
        for pattern in (r"\bimport pickle\b", r"\bcloudpickle\b", r"recv_pyobj|send_pyobj", r"allow_pickle\s*=\s*True"):
            if re.search(pattern, text):
                bad.append(f"{path.relative_to(ROOT)}: {pattern}")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                bad.append(f"{path.relative_to(ROOT)}: {call}")
    assert bad == []
