"""CurveZMQ ironhouse on the bus: allowed keys get service (and are named with each drive),
unknown keys and plain clients get none, refusals are logged, plain network binds refuse to start."""
import logging
import os
import shutil
import stat
import uuid

import numpy as np
import pytest
import zmq

from bridge import RigClient, RigServer, StationError
from bridge.auth import Security, client_keys, is_local
from bridge.errors import RigTimeout, RigUnavailable
from bridge.station import parse_station, serve
from bridge.backends.testrigs import EchoRig
from nado.cli import main

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)

U = np.linspace(-1, 1, 6).reshape(2, 3, 1)


@pytest.fixture
def keys(tmp_path):
    """server/ (pair + clients/ with alice.key), alice/ (pair + server.key), mallory/ (not allowed)."""
    for name in ("server", "alice", "mallory"):
        assert main(["keys", "generate", name, "--out", str(tmp_path / name)]) == 0
    (tmp_path / "server" / "clients").mkdir()
    shutil.copy(tmp_path / "alice" / "alice.key", tmp_path / "server" / "clients")
    for name in ("alice", "mallory"):
        shutil.copy(tmp_path / "server" / "server.key", tmp_path / name)
    return tmp_path


@pytest.fixture
def secure(keys):
    rig = EchoRig("echo", lo=-10, hi=10)
    sec = Security(server_key=keys / "server" / "server.key_secret", clients=keys / "server" / "clients",
                   allow_plain=False).checked()
    server = RigServer({"echo": rig}, "tcp://127.0.0.1:*", security=sec).start()
    yield server, rig, keys
    server.close()


def test_keys_generate_writes_a_private_secret(keys, capsys):
    secret = keys / "alice" / "alice.key_secret"
    assert secret.exists() and (keys / "alice" / "alice.key").exists()
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert main(["keys", "generate", "alice", "--out", str(keys / "alice")]) == 1   # never overwrites
    assert "exists" in capsys.readouterr().err
    pub, sec, server_pub = client_keys(keys / "alice")
    assert len(pub) == len(sec) == len(server_pub) == 40


def test_allowed_client_is_served_and_named(secure, caplog):
    server, rig, keys = secure
    with caplog.at_level(logging.INFO, logger="bridge.server"):
        with RigClient(server.endpoints[0], "echo", timeout_s=5, curve_keys=keys / "alice") as c:
            assert c.hello()["rigs"] == ["echo"]
            np.testing.assert_array_equal(c.drive(U, seed=1).outputs, U)
            st = c.status(rig="echo")
    assert st["rigs"]["echo"]["users"] == {"alice": 1} and st["rigs"]["echo"]["drives"] == 1
    assert any("by alice" in r.getMessage() for r in caplog.records)


def test_unknown_key_gets_no_service_and_is_logged(secure, caplog):
    server, rig, keys = secure
    with caplog.at_level(logging.WARNING, logger="bridge.auth"):
        with RigClient(server.endpoints[0], "echo", timeout_s=2, retries=1, dead_after_s=1.0,
                       curve_keys=keys / "mallory") as c:
            with pytest.raises((RigUnavailable, RigTimeout)):
                c.drive(U)
    assert rig.drive_calls == 0
    assert server.status()["refused"] >= 1
    assert any("refused a client" in r.getMessage() for r in caplog.records)


def test_plain_client_gets_no_service(secure):
    server, rig, _ = secure
    with RigClient(server.endpoints[0], "echo", timeout_s=1, retries=1, dead_after_s=1.0) as c:
        with pytest.raises((RigUnavailable, RigTimeout)):
            c.drive(U)
    assert rig.drive_calls == 0 and server.status()["requests"] == 0


def test_client_keys_from_the_environment(secure, monkeypatch):
    server, rig, keys = secure
    monkeypatch.setenv("NADO_KEYS", str(keys / "alice"))
    with RigClient(server.endpoints[0], "echo", timeout_s=5) as c:
        assert c.describe()["name"] == "echo"


def test_plain_policy():
    assert is_local("tcp://127.0.0.1:5555") and is_local("tcp://localhost:1") and is_local("tcp://[::1]:9")
    assert is_local("ipc:///tmp/x") and not is_local("tcp://0.0.0.0:5555") and not is_local("tcp://eth0:5")
    with pytest.raises(StationError, match="without keys"):
        RigServer({"echo": EchoRig()}, "tcp://0.0.0.0:*")
    strict = Security(allow_plain=False)
    with pytest.raises(StationError, match="allow_plain"):
        RigServer({"echo": EchoRig()}, "tcp://127.0.0.1:*", security=strict)
    with RigServer({"echo": EchoRig()}, f"inproc://plain-{uuid.uuid4().hex}", security=strict):
        pass   # inproc never leaves the process


def test_station_security_table(keys, tmp_path):
    st = parse_station({"rigs": {"e": {"backend": "echo"}},
                        "security": {"server_key": "server/server.key_secret", "clients": "server/clients"}},
                       str(keys / "station.toml"))
    with serve(st, "tcp://127.0.0.1:*") as server:
        assert server.security.curve
        with RigClient(server.endpoints[0], "e", timeout_s=5, curve_keys=keys / "alice") as c:
            assert c.drive(U).outputs.shape == U.shape
    st = parse_station({"rigs": {"e": {"backend": "echo"}}, "security": {"allow_plain": False}})
    with pytest.raises(StationError, match="allow_plain"):
        serve(st, "tcp://127.0.0.1:*")
    for bad, msg in (({"server_key": "server/server.key_secret"}, "both"),
                     ({"server_key": "server/server.key", "clients": "server/clients"}, "no secret"),
                     ({"allow_plain": "yes"}, "true or false"), ({"keys": 1}, "unknown")):
        with pytest.raises(StationError, match=msg):
            Security.from_settings({"security": bad}, keys)
    st = parse_station({"rigs": {"e": {"backend": "echo"}}, "server": {"queue_sz": 3}})
    with pytest.raises(StationError, match="unknown key"):
        serve(st, "inproc://never")


def test_rig_commands_take_keys(secure, capsys):
    server, _, keys = secure
    assert main(["rig", "ping", "--connect", server.endpoints[0], "--keys", str(keys / "alice")]) == 0
    assert "serves echo" in capsys.readouterr().out
    assert main(["rig", "ping", "--connect", server.endpoints[0], "--timeout", "1", "--retries", "0"]) == 1
    assert "requires CurveZMQ keys" in capsys.readouterr().err
