"""Station files: TOML parsing, backends by entry point and python:, clear errors naming rig and key."""
import dataclasses
import sys
import textwrap
import uuid

import numpy as np
import pytest

from bridge import RigClient
from bridge.errors import StationError
from bridge.station import BUILTIN, build_rig, build_rigs, load_station, parse_station, serve
from bridge.backends.testrigs import EchoRig, LeakyRig


def station(tmp_path, text):
    p = tmp_path / f"station-{uuid.uuid4().hex[:6]}.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_builtin_station_serves_emulated_nra_and_asvi():
    st = load_station(None)
    assert st is BUILTIN
    assert [(s.name, s.backend) for s in st.rigs] == [("nra", "physics.nra"), ("asvi", "physics.asvi")]


def test_parse_params_and_build(tmp_path):
    p = station(tmp_path, """
        [rigs.e]
        backend = "echo"
        n_in = 2

        [rigs.l]
        backend = "leaky"
        seed = 3
        n_out = 2
        leak = [0.1, 0.3]
    """)
    st = load_station(p)
    assert st.path == str(p) and [s.name for s in st.rigs] == ["e", "l"]
    assert st.rigs[1].params == {"seed": 3, "n_out": 2, "leak": [0.1, 0.3]} and st.rigs[1].limits is None
    rigs = build_rigs(st)
    assert isinstance(rigs["e"], EchoRig) and rigs["e"].describe()["input"]["dims"] == [2]
    assert isinstance(rigs["l"], LeakyRig) and rigs["l"].describe()["output"]["dims"] == [2]
    assert rigs["l"].name == "l"
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.rigs[0].backend = "x"


def test_limits_are_reserved_and_guard_the_rig(tmp_path):
    p = station(tmp_path, """
        [rigs.l]
        backend = "leaky"
        limits = { max_field_oe = 0.5 }
    """)
    spec = load_station(p).rigs[0]
    assert spec.limits == {"max_field_oe": 0.5} and "limits" not in spec.params
    rig = build_rig(load_station(p), "l")
    assert rig.describe()["input"]["max"] == pytest.approx(0.5)


@pytest.mark.parametrize("text, words", [
    ("[rigs.a\nbackend=", ["not valid TOML"]),
    ("[other]\nx = 1\n", ["unknown top-level", "other"]),
    ("title = 'x'\n", ["unknown top-level"]),
    ("[rigs]\n", ["no rigs"]),
    ("[rigs]\na = 1\n", ["rigs.a", "table"]),
    ("[rigs.a]\nseed = 1\n", ["rigs.a.backend", "missing"]),
    ("[rigs.a]\nbackend = 3\n", ["rigs.a.backend"]),
    ("[rigs.a]\nbackend = 'warp.drive'\n", ["rigs.a.backend", "warp.drive", "unknown", "leaky"]),
    ("[rigs.a]\nbackend = 'leaky'\nlimits = 3\n", ["rigs.a.limits"]),
    ("[rigs.a]\nbackend = 'leaky'\nname = 'b'\n", ["rigs.a.name"]),
    ("[rigs.'a b']\nbackend = 'leaky'\n", ["a b"]),
])
def test_station_errors_name_the_problem(tmp_path, text, words):
    p = station(tmp_path, text)
    with pytest.raises(StationError) as info:
        build_rigs(load_station(p))
    for w in words:
        assert w in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(StationError, match="not found"):
        load_station(tmp_path / "nope.toml")


def test_bad_params_list_the_accepted_ones(tmp_path):
    p = station(tmp_path, "[rigs.l]\nbackend = 'leaky'\nleek = 0.3\n")
    with pytest.raises(StationError) as info:
        build_rigs(load_station(p))
    msg = str(info.value)
    assert "rigs.l" in msg and "leek" in msg and "'leak'" in msg and "n_out" in msg


def test_constructor_refusal_names_the_rig(tmp_path):
    p = station(tmp_path, "[rigs.l]\nbackend = 'leaky'\nn_out = 0\n")
    with pytest.raises(StationError, match=r"rigs\.l.*n_in and n_out must be >= 1"):
        build_rigs(load_station(p))


def test_failed_build_closes_rigs_already_built(tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr(EchoRig, "close", lambda self: closed.append(self.name))
    p = station(tmp_path, "[rigs.a]\nbackend = 'echo'\n[rigs.b]\nbackend = 'leaky'\nn_out = 0\n")
    with pytest.raises(StationError):
        build_rigs(load_station(p))
    assert closed == ["a"]


DRIVER = '''
import numpy as np
from bridge.rig import DriveResult, check_inputs

class Doubler:
    """A user's driver: outputs = gain * inputs."""
    def __init__(self, name, *, gain=2.0):
        self.name, self.gain = name, gain
    def describe(self):
        return {"name": self.name, "kind": "doubler", "backend": "python", "source": "user://doubler",
                "emulated": True, "input": {"dims": [1], "units": "V", "min": -1.0, "max": 1.0},
                "output": {"dims": [1], "units": "V"}, "step_s": 0.001}
    def drive(self, inputs, *, reset=True, seed=None):
        x = check_inputs(inputs, self.describe())
        return DriveResult(self.gain * x, np.zeros((x.shape[0], 1)), 0.001 * x.shape[1])
'''


def test_python_backend_served_and_driven(tmp_path, monkeypatch):
    mod = f"userdriver_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(DRIVER)
    monkeypatch.syspath_prepend(str(tmp_path))
    p = station(tmp_path, f"[rigs.dbl]\nbackend = 'python:{mod}:Doubler'\ngain = 3.0\n")
    ep = f"inproc://station-{uuid.uuid4().hex}"
    with serve(p, ep) as server, RigClient(ep, "dbl", timeout_s=10.0) as client:
        assert server.endpoints == [ep]
        assert client.describe()["source"] == "user://doubler"
        res = client.drive(np.full((1, 2, 1), 0.5))
        np.testing.assert_allclose(res.outputs, 1.5)
    sys.modules.pop(mod, None)


@pytest.mark.parametrize("backend, words", [
    ("python:no_such_module_xyz:Rig", ["cannot import", "no_such_module_xyz"]),
    ("python:bridge.backends.testrigs:NoSuchRig", ["has no NoSuchRig"]),
    ("python:bridge.backends.testrigs", ["python:package.module:Class"]),
])
def test_python_backend_errors(backend, words):
    st = parse_station({"rigs": {"u": {"backend": backend}}})
    with pytest.raises(StationError) as info:
        build_rig(st, "u")
    assert "rigs.u.backend" in str(info.value)
    for w in words:
        assert w in str(info.value)


def test_unknown_rig_name():
    with pytest.raises(StationError, match="no rig 'x'"):
        build_rig(BUILTIN, "x")


def test_drive_size_limits_from_the_station(tmp_path):
    from bridge.station import server_options
    p = station(tmp_path, "[server]\nmax_drive_elements = 1000\npeer_queue = 4\n"
                          "[rigs.a]\nbackend = 'echo'\n[rigs.b]\nbackend = 'echo'\nmax_drive_elements = 10\n")
    st = load_station(p)
    opts = server_options(st)
    assert opts["max_drive_elements"] == 1000 and opts["peer_queue"] == 4
    assert opts["rig_max_drive_elements"] == {"b": 10}
    assert "max_drive_elements" not in st.rigs[1].params          # reserved, not a backend parameter
    with serve(st, "inproc://limits-" + tmp_path.name) as srv:
        rigs = srv.status()["rigs"]
        assert rigs["a"]["max_drive_elements"] == 1000 and rigs["b"]["max_drive_elements"] == 10
    for text, words in (("[rigs.a]\nbackend = 'echo'\nmax_drive_elements = 0\n", ["rigs.a.max_drive_elements", ">= 1"]),
                        ("[server]\npeer_queue = 0\n[rigs.a]\nbackend = 'echo'\n", ["[server] peer_queue", "positive int"])):
        with pytest.raises(StationError) as info:
            server_options(load_station(station(tmp_path, text)))
        assert all(w in str(info.value) for w in words), info.value
