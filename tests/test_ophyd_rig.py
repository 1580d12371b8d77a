"""The ``ophyd`` backend: an ophyd-async device (soft and mock signals, no hardware) as a rig.

The device is tests/ophyd_leaky.py's stage (a task plays a leaky integrator from
its field to its sensor). The conformance suite runs over it too
(tests/test_bus_conformance.py, ``NEEDS["ophyd"]``).
"""
import asyncio
import json
import threading
import tomllib
import uuid

import numpy as np
import pytest

pytest.importorskip("ophyd_async", reason="the ophyd backend needs the bluesky extra")

import ophyd_leaky  # noqa: E402  (tests/ is on sys.path)

from bridge import RigClient, RigServer  # noqa: E402
from bridge.errors import StationError  # noqa: E402
from bridge.station import build_rig, parse_station  # noqa: E402
from bridge.backends.testrigs import EchoRig  # noqa: E402


def station(extra: str = "", *, limits: bool = True, drop: tuple[str, ...] = ()) -> dict:
    lines = [ln for ln in ophyd_leaky.STATION.strip().splitlines()
             if not any(ln.startswith(k) for k in drop) and (limits or not ln.startswith("limits"))]
    return tomllib.loads("\n".join(lines) + "\n" + extra)


@pytest.fixture
def rig():
    r = ophyd_leaky.build()
    yield r
    r.close()


def _field(rig) -> float:
    return rig._run(rig.device.field.get_value())


def test_describe_comes_from_the_device_metadata(rig):
    d = rig.describe()
    assert d["backend"] == "ophyd" and d["emulated"] is False
    assert d["input"] == {"dims": [1], "units": "Oe", "min": 0.0, "max": 40.0}   # the field's control limits
    assert d["output"] == {"dims": [1], "units": "V"}
    assert [c["name"] for c in d["channels"]] == ["stage-sensor-value"]
    assert d["limits"] == {"max_field_oe": 40.0, "max_coil_v": 5.0, "max_slew_oe_per_s": 1.0e6}
    assert d["step_s"] == 0.001


def test_output_follows_the_input_and_the_reset_forgets(rig):
    up = np.linspace(0.0, 40.0, 30)[None, :, None]
    a = rig.drive(up)
    out = a.outputs[0, :, 0]
    assert out.shape == (30,) and abs(a.initial[0, 0]) < 0.05      # reset: state 0 plus small noise
    assert out[:5].mean() < -0.4 and out[-5:].mean() > 0.6          # tanh((u - 20) / 6), leaky
    b = rig.drive(up)                                               # same inputs after a reset
    np.testing.assert_allclose(b.outputs, a.outputs, rtol=0, atol=0.1)
    assert a.instrument_s > 0


def test_make_safe_sets_the_safe_value_after_every_drive(rig):
    rig.drive(np.full((1, 3, 1), 35.0))
    assert _field(rig) == 0.0    # the guard called make_safe: the field is back at its safe value
    rig.rig.make_safe()
    assert _field(rig) == 0.0


def test_limits_are_enforced_before_the_device(rig):
    from bridge import OutOfRange
    steps = rig.device.steps
    with pytest.raises(OutOfRange):
        rig.drive(np.full((1, 2, 1), 41.0))
    assert rig.device.steps == steps


def test_a_real_device_needs_limits_and_a_range():
    with pytest.raises(StationError, match="max_field_oe"):
        build_rig(parse_station(station(limits=False)), "stage")
    unbounded = station('device_args = { field_range = false }\n')
    unbounded["rigs"]["stage"]["device_args"] = {"field_range": None}
    with pytest.raises(StationError, match="input_range"):
        build_rig(parse_station(unbounded), "stage")
    st = station()
    st["rigs"]["stage"].update(device_args={"field_range": None}, input_range=[5.0, 30.0])
    r = build_rig(parse_station(st), "stage")
    try:
        assert (r.describe()["input"]["min"], r.describe()["input"]["max"]) == (5.0, 30.0)
        assert r.describe()["safe_value"] == 5.0   # the range's value nearest 0
    finally:
        r.close()


@pytest.mark.parametrize("key, value, match", [
    ("outputs", "sensor.value", "non-empty list"),
    ("input", "nothere", "no 'nothere'"),
    ("outputs", ["sensor.nothere"], "no 'nothere'"),
    ("device", "ophyd_leaky:no_such_factory", "has no no_such_factory"),
    ("settle_s", -1.0, "seconds >= 0"),
    ("safe_value", 50.0, "outside the input range"),
])
def test_bad_station_entries_name_the_problem(key, value, match):
    st = station()
    st["rigs"]["stage"][key] = value
    with pytest.raises(StationError, match=match):
        build_rig(parse_station(st), "stage")


def test_several_outputs_are_channels_in_order():
    st = station()
    st["rigs"]["stage"]["outputs"] = ["sensor.value", "field"]   # the field read back as channel 2
    r = build_rig(parse_station(st), "stage")
    try:
        d = r.describe()
        assert d["output"] == {"dims": [2], "units": "Oe,V"}
        assert [c["name"] for c in d["channels"]] == ["stage-sensor-value", "stage-field"]
        u = np.array([[[5.0], [25.0], [35.0]]])
        res = r.drive(u)
        np.testing.assert_array_equal(res.outputs[0, :, 1], u[0, :, 0])
        assert res.outputs[0, 0, 0] < 0 < res.outputs[0, 2, 0]
    finally:
        r.close()


def test_reset_false_needs_one_experiment(rig):
    from bridge import BadInput
    with pytest.raises(BadInput, match="B must be 1"):
        rig.drive(np.full((2, 2, 1), 10.0), reset=False)


def test_mock_signals_record_what_the_rig_sets():
    """``mock = true``: ophyd-async's mock signals, as for a device whose hardware is absent."""
    from ophyd_async.core import get_mock_put, set_mock_value
    st = station("mock = true\n", drop=("reset", "device"))
    st["rigs"]["stage"]["device"] = "ophyd_leaky:LeakyStage"   # no task: nothing plays the device
    st["rigs"]["stage"]["input_range"] = [0.0, 40.0]   # a mock signal states no limits
    r = build_rig(parse_station(st), "stage")
    try:
        r._run(_set_mock(set_mock_value, r.device.sensor.value, 0.25))
        res = r.drive(np.array([[[10.0], [20.0]]]))
        np.testing.assert_array_equal(res.outputs, 0.25)
        puts = [c.args[0] for c in get_mock_put(r.device.field).call_args_list]
        assert puts == [0.0, 10.0, 20.0, 0.0]   # reset to the safe value, the steps, make_safe
    finally:
        r.close()


async def _set_mock(fn, signal, value):
    fn(signal, value)


def test_served_drives_do_not_block_the_server(tmp_path, monkeypatch):
    """A drive held inside the device (its reset waits on a gate) does not stop another rig's replies."""
    gate, entered = threading.Event(), threading.Event()

    async def gated_reset(stage):
        entered.set()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30.0)
        await ophyd_leaky.reset_stage(stage)

    monkeypatch.setattr(ophyd_leaky, "gated_reset", gated_reset, raising=False)
    st = station()
    st["rigs"]["stage"]["reset"] = "ophyd_leaky:gated_reset"
    rig = build_rig(parse_station(st), "stage")
    ep = f"inproc://ophyd-{uuid.uuid4().hex}"
    server = RigServer({"stage": rig, "echo": EchoRig("echo")}, ep).start()
    result = {}
    try:
        def drive():
            with RigClient(ep, "stage", timeout_s=60) as c:
                result["stage"] = c.drive(np.full((1, 4, 1), 30.0))

        t = threading.Thread(target=drive)
        t.start()
        assert entered.wait(30)
        with RigClient(ep, "echo", timeout_s=30) as c:
            echo = c.drive(np.ones((1, 2, 1)))          # answered while the stage's drive waits
        assert not gate.is_set() and "stage" not in result
        np.testing.assert_array_equal(echo.outputs, 1.0)
        gate.set()
        t.join(60)
        assert result["stage"].outputs.shape == (1, 4, 1)
    finally:
        gate.set()
        server.close()


@pytest.mark.e2e
def test_nado_collect_and_fit_ode_against_the_device(tmp_path, monkeypatch):
    from nado.cli import main
    st = tmp_path / "station.toml"
    st.write_text(ophyd_leaky.STATION)
    data, twin = tmp_path / "data.h5", tmp_path / "twin_ode.pt"
    assert main(["collect", "--station", str(st), "--rig", "stage", "--out", str(data),
                 "--sequences", "60", "--length", "12", "--repeats", "6", "5", "--resets", "20",
                 "--sweep", "17", "2", "6", "--batch", "30", "--no-progress"]) == 0
    from nado.data.dataset import load_dataset
    ds = load_dataset(data)
    assert ds.dynamics_outputs.shape == (60, 12, 1) and ds.repeats_outputs.shape == (6, 5, 12, 1)
    lo, hi = float(ds.active_lo[0]), float(ds.active_hi[0])
    assert 0.0 <= lo < 20.0 < hi <= 40.0 and hi - lo < 40.0   # the tanh's slope, not the whole range
    assert ds.attrs["rig"]["backend"] == "ophyd"
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a tiny model: one thread (the fit keeps at most what it is given)
    try:
        assert main(["fit", "ode", str(data), "--out", str(twin), "--epochs", "5", "--width", "16",
                     "--depth", "1", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    fit = json.loads(twin.with_suffix(".json").read_text())
    assert fit["extra"]["rig"]["backend"] == "ophyd"
    assert fit["extra"]["fit"]["val_nrmse"] < 0.5   # the twin explains most of the response (a mean predictor scores 1)
