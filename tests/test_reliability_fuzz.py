"""Fuzzing the new ops (lock/unlock/status, the client token) with hypothesis, and a short run of the
standalone fuzzer (``python -m bridge.fuzz``): the server never crashes, keeps answering well-formed
clients, and nothing invalid reaches the rig."""
import uuid

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import RigServer
from bridge import fuzz
from bridge.fuzz import StrictEcho

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
anything = st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=10) \
    | st.binary(max_size=10) | st.lists(st.integers(-9, 2**40), max_size=3) \
    | st.dictionaries(st.text(max_size=5), st.integers(-9, 9), max_size=2)


@pytest.fixture(scope="module")
def bus():
    rig = StrictEcho()
    server = RigServer({"echo": rig}, f"inproc://rfuzz-{uuid.uuid4().hex}", max_lease_s=0.5).start()
    ctx = zmq.Context.instance()
    socks = [ctx.socket(zmq.DEALER) for _ in range(2)]
    for s in socks:
        s.setsockopt(zmq.LINGER, 0)
        s.connect(server.endpoints[0])
    yield server, rig, *socks
    for s in socks:
        s.close(linger=0)
    server.close()


@SETTINGS
@given(op=st.sampled_from(["lock", "unlock", "status", "drive"]), rig_name=st.sampled_from(["echo", None, 3, ""]),
       client=anything, lease_s=anything, holder=anything, extra=st.booleans())
def test_lease_ops_with_any_arguments(bus, op, rig_name, client, lease_s, holder, extra):
    server, rig, fuzzer, probe = bus
    head = {"v": 1, "id": uuid.uuid4().hex, "op": op, "client": client,
            "args": {"lease_s": lease_s, "holder": holder, **({"x": 1} if extra else {})}}
    if rig_name is not None:
        head["rig"] = rig_name
    fuzzer.send_multipart([msgpack.packb(head, use_bin_type=True)])
    assert fuzz._probe(probe), "the server stopped answering"
    while fuzzer.poll(0):
        fuzzer.recv_multipart()
    assert server._thread.is_alive() and server.status()["errors"].get("INTERNAL", 0) == 0
    assert rig.violations == [] and rig.drive_calls == 0       # none of these is a valid drive


def test_standalone_fuzzer_short_run():
    rep = fuzz.run(3.0, seed=1)
    assert rep.ok, rep
    assert rep.inputs > 500 and rep.rig_calls > 0 and rep.probes == rep.probes_answered > 5
