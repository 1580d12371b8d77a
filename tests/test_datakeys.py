"""Every rig's describe reply carries event-model DataKeys, valid against event-model's schema."""
import uuid

import numpy as np
import pytest

from bridge import RigClient, RigServer
from bridge.datakeys import without_data_keys, data_keys, source_of, with_data_keys
from bridge.station import build_rigs, load_station
from bridge.backends.testrigs import EchoRig, LeakyRig

event_model = pytest.importorskip("event_model", reason="event-model is in the bluesky extra")


def _validate(keys: dict) -> None:
    """Validate ``{name: DataKey}`` inside a minimal descriptor document (raises on failure)."""
    doc = {"uid": str(uuid.uuid4()), "run_start": str(uuid.uuid4()), "time": 0.0,
           "data_keys": keys, "name": "primary"}
    event_model.schema_validators[event_model.DocumentNames.descriptor].validate(doc)


@pytest.fixture(scope="module")
def station_bus():
    rigs = {**build_rigs(load_station(None)), "leaky": LeakyRig("leaky", n_in=2, n_out=3),
            "echo": EchoRig("echo", n_in=3)}
    ep = f"inproc://datakeys-{uuid.uuid4().hex}"
    server = RigServer(rigs, ep).start()
    yield ep, rigs
    server.close()


@pytest.mark.parametrize("rig", ["nra", "asvi", "leaky", "echo"])
def test_describe_reply_carries_valid_data_keys(station_bus, rig):
    ep, rigs = station_bus
    with RigClient(ep, rig) as client:
        d = client.describe()
    keys = d["data_keys"]
    _validate({f"{rig}-input": keys["input"], f"{rig}-output": keys["output"]})
    for side in ("input", "output"):
        n = d[side]["dims"][0]
        k = keys[side]
        assert k["shape"] == ([] if n == 1 else [n])
        assert k["dtype"] == ("number" if n == 1 else "array")
        assert k["units"] == d[side]["units"]
        assert k["source"] == f"nado://{ep}/{rig}" == source_of(ep, rig)
    assert keys["input"]["limits"]["control"] == {"low": d["input"]["min"], "high": d["input"]["max"]}
    # the rest of the description is what the rig itself says
    local = rigs[rig].describe()
    assert d["max_drive_elements"] > 0                      # the server's drive-size limit, for clients
    assert without_data_keys(d) == local


def test_station_limits_are_the_control_limits(tmp_path):
    st = tmp_path / "station.toml"
    st.write_text('[rigs.nra]\nbackend = "physics.nra"\nlimits = { max_field_oe = 30.0 }\n')
    from bridge.station import serve
    ep = f"inproc://datakeys-{uuid.uuid4().hex}"
    with serve(str(st), ep), RigClient(ep, "nra") as client:
        d = client.describe()
    assert d["data_keys"]["input"]["limits"]["control"]["high"] == 30.0
    _validate({"nra-input": d["data_keys"]["input"]})


def test_broken_schema_is_caught():
    """The validation above is not vacuous: a DataKey without a shape fails it."""
    keys = data_keys(LeakyRig("x").describe(), "nado://here/x")
    bad = dict(keys["output"])
    del bad["shape"]
    with pytest.raises(Exception, match="shape"):
        _validate({"x-output": bad})
    with pytest.raises(Exception):
        _validate({"x-output": {**keys["output"], "dtype": "float"}})


def test_output_range_becomes_display_limits_and_bad_descriptions_pass_through():
    d = LeakyRig("x").describe()
    d["output"].update(min=-1.0, max=1.0)
    keys = with_data_keys(d, None)["data_keys"]
    assert keys["output"]["limits"] == {"display": {"low": -1.0, "high": 1.0}}
    assert keys["input"]["source"] == "nado://local/x"
    assert with_data_keys({"name": "broken"}, "inproc://x") == {"name": "broken"}
    np.testing.assert_equal(keys["input"]["shape"], [])


def test_identity_without_data_keys_does_not_depend_on_the_endpoint():
    """Two servers of the same rig differ only in data_keys' source (what nado run's cache keys drop)."""
    from bridge.datakeys import without_data_keys
    descs = []
    for _ in range(2):
        ep = f"inproc://datakeys-{uuid.uuid4().hex}"
        with RigServer({"leaky": LeakyRig("leaky")}, ep), RigClient(ep, "leaky") as c:
            descs.append(c.describe())
    assert descs[0]["data_keys"] != descs[1]["data_keys"]
    assert without_data_keys(descs[0]) == without_data_keys(descs[1]) == LeakyRig("leaky").describe()
