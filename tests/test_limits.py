"""Safety interlocks (bridge.limits): station limits, refusal before the rig, make_safe, check."""
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bridge.errors import BadInput, OutOfRange, RigError, StationError
from bridge.limits import GuardedRig, Limits, guard
from bridge.station import check_station
from bridge.station import build_rigs, load_station
from bridge.backends.testrigs import EchoRig

ROOT = Path(__file__).resolve().parents[1]

# The README's example user driver, verbatim: tests load it through a station file.
EXAMPLE_DRIVER = '''
"""mypkg/mod.py: a user's rig driver for nado (station: backend = "python:mypkg.mod:MyRig")."""
import numpy as np

from bridge.rig import DriveResult, check_inputs


class MyRig:
    """A magnet and a field sensor. Replace set_field/read_sensor with your instrument's calls."""

    def __init__(self, name="mine", *, tau_steps=3.0, step_s=0.1, input_max_oe=50.0):
        self.name, self.step_s, self.input_max_oe = name, float(step_s), float(input_max_oe)
        self.a = 1.0 / float(tau_steps)
        self.level = 0.0            # what the instrument holds now (here: a simulated lag)
        self.drive_calls = self.make_safe_calls = 0

    def describe(self):
        return {"name": self.name, "kind": "mine", "backend": "python:mypkg.mod:MyRig",
                "source": f"mylab://{self.name}", "emulated": False,   # real hardware: limits required
                "input": {"dims": [1], "units": "Oe", "min": 0.0, "max": self.input_max_oe},
                "output": {"dims": [1], "units": "V"}, "step_s": self.step_s}

    def set_field(self, oe):        # your instrument: e.g. a SCPI "FIELD {oe}" over pyvisa
        self.level += self.a * (oe - self.level)

    def read_sensor(self):          # your instrument: e.g. float(dmm.query("READ?"))
        return 0.01 * self.level

    def reset(self):                # the protocol that puts the device in a known state
        self.set_field(self.input_max_oe)
        self.level = 0.0

    def drive(self, inputs, *, reset=True, seed=None):
        x = check_inputs(inputs, self.describe())          # (B, T, 1), float64, in range
        if not reset and x.shape[0] != 1:
            raise ValueError("a real rig has one state: reset=False needs B = 1")
        self.drive_calls += 1
        B, T, _ = x.shape
        out, init = np.empty((B, T, 1)), np.empty((B, 1))
        for b in range(B):                                  # one experiment after another
            if reset:
                self.reset()
            init[b] = self.read_sensor()
            for t in range(T):
                self.set_field(x[b, t, 0])
                out[b, t] = self.read_sensor()
        return DriveResult(outputs=out, initial=init, instrument_s=B * T * self.step_s)

    def make_safe(self):            # bridge calls this after each drive, on errors and on close
        self.make_safe_calls += 1
        self.level = 0.0

    def close(self):
        self.make_safe()
'''



def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_limits_table_parsing():
    lim = Limits.from_table({"max_field_oe": 80, "max_coil_v": 8.0, "max_slew_oe_per_s": 1e5}, rig="nra")
    assert lim == Limits(80.0, 8.0, 1e5) and lim.missing_for_real() == []
    assert Limits.from_table(None).is_empty()
    with pytest.raises(StationError, match=r"unknown limit\(s\) \['field_oe'\]"):
        Limits.from_table({"field_oe": [0, 80]}, rig="nra")
    for bad in (-1.0, 0, True, "80", float("nan")):
        with pytest.raises(StationError, match="max_coil_v must be a positive number"):
            Limits.from_table({"max_coil_v": bad}, rig="nra")
    with pytest.raises(StationError, match="must be a table"):
        Limits.from_table([80.0], rig="nra")


def test_outside_limits_refused_with_out_of_range_and_the_rig_never_called(served):
    echo = EchoRig("echo", lo=-100.0, hi=100.0)
    guarded = guard(echo, {"max_field_oe": 50.0})
    assert isinstance(guarded, GuardedRig)
    desc = guarded.describe()
    assert (desc["input"]["min"], desc["input"]["max"]) == (-50.0, 50.0)
    assert desc["limits"] == {"max_field_oe": 50.0}
    client = served({"echo": guarded}, "echo")
    assert client.describe()["input"]["max"] == 50.0
    with pytest.raises(RigError) as info:
        client.drive(np.full((1, 3, 1), 60.0))
    assert info.value.code == "OUT_OF_RANGE"
    with pytest.raises(OutOfRange):  # in-process callers are guarded too
        guarded.drive(np.full((1, 3, 1), -51.0))
    assert echo.drive_calls == 0 and echo.make_safe_calls == 0
    res = client.drive(np.full((1, 3, 1), 40.0))
    assert np.all(res.outputs == 40.0)
    assert echo.drive_calls == 1 and echo.make_safe_calls >= 1  # made safe after the drive


def test_emulated_rig_without_limits_is_unchanged():
    echo = EchoRig("echo")
    assert guard(echo, None) is echo and guard(echo, {}) is echo


def test_step_slew_is_checked_where_no_coil_waveform_is_exposed():
    echo = EchoRig("echo", lo=-100.0, hi=100.0, step_s=0.1)
    guarded = guard(echo, {"max_slew_oe_per_s": 100.0})
    with pytest.raises(OutOfRange, match="max_slew_oe_per_s"):
        guarded.drive(np.array([0.0, 5.0, 20.0]).reshape(1, 3, 1))  # 15 per 0.1 s = 150/s
    guarded.drive(np.array([0.0, 5.0, 10.0]).reshape(1, 3, 1))
    assert echo.drive_calls == 1


class FailingRig(EchoRig):
    def drive(self, inputs, *, reset=True, seed=None):
        self.drive_calls += 1
        raise RuntimeError("coil supply tripped")


def test_make_safe_after_errors_and_on_close(served):
    bad = FailingRig("bad", lo=-10.0, hi=10.0)
    guarded = guard(bad, {"max_field_oe": 5.0})
    with pytest.raises(RigError) as info:
        guarded.drive(np.zeros((1, 2, 1)))
    assert info.value.code == "RIG_FAULT" and "coil supply tripped" in info.value.message
    assert bad.make_safe_calls == 1
    client = served({"bad": guard(FailingRig("bad2", lo=-10.0, hi=10.0), {"max_field_oe": 5.0})}, "bad")
    with pytest.raises(RigError) as info:
        client.drive(np.zeros((1, 2, 1)))
    assert info.value.code == "RIG_FAULT"
    # a rig's own coded error keeps its code; the rig is made safe all the same
    echo = EchoRig("echo", lo=-10.0, hi=10.0)
    g = guard(echo, {"max_field_oe": 5.0})
    g.drive(np.zeros((2, 2, 1)))
    with pytest.raises(BadInput):
        g.drive(np.zeros((3, 2, 1)), reset=False)
    assert echo.make_safe_calls == 2
    g.close()
    assert echo.closed and echo.make_safe_calls == 3
    assert g.n_out == 1  # other attributes are the backend's


def test_user_driver_from_a_station_with_limits(tmp_path, monkeypatch, served):
    write(tmp_path / "pkgs" / "mypkg" / "__init__.py", "")
    write(tmp_path / "pkgs" / "mypkg" / "mod.py", EXAMPLE_DRIVER)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    station = write(tmp_path / "lab.toml", """
        [rigs.mine]
        backend = "python:mypkg.mod:MyRig"
        tau_steps = 2.0
        limits = { max_field_oe = 40.0, max_coil_v = 10.0, max_slew_oe_per_s = 300.0 }
        """)
    report = check_station(str(station))
    assert "mine: backend=python:mypkg.mod:MyRig (REAL" in report
    assert "input 0..40 Oe" in report and "max_slew_oe_per_s=300" in report
    rigs = build_rigs(load_station(station))
    mine = rigs["mine"]
    client = served(rigs, "mine")
    with pytest.raises(RigError) as info:
        client.drive(np.full((1, 2, 1), 45.0))  # the driver allows 50 Oe, the station 40
    assert info.value.code == "OUT_OF_RANGE" and mine.drive_calls == 0
    with pytest.raises(RigError) as info:
        client.drive(np.array([0.0, 35.0]).reshape(1, 2, 1))  # 35 Oe in 0.1 s = 350 Oe/s
    assert info.value.code == "OUT_OF_RANGE" and mine.drive_calls == 0
    res = client.drive(np.array([10.0, 20.0, 30.0]).reshape(1, 3, 1))
    assert np.allclose(res.outputs[0, :, 0], [0.05, 0.125, 0.2125])
    assert mine.drive_calls == 1 and mine.make_safe_calls >= 1
    # the same driver without limits refuses to start
    bare = write(tmp_path / "bare.toml", '[rigs.mine]\nbackend = "python:mypkg.mod:MyRig"\n')
    with pytest.raises(StationError, match="drives real hardware .* no max_field_oe, max_coil_v"):
        build_rigs(load_station(bare))


def test_check_station_reports_every_rig_and_fails_clearly(tmp_path):
    good = write(tmp_path / "good.toml", """
        [rigs.echo]
        backend = "echo"
        lo = -100.0
        hi = 100.0
        limits = { max_field_oe = 50.0 }
        [rigs.leaky]
        backend = "leaky"
        """)
    report = check_station(str(good))
    assert "echo: backend=echo (emulated" in report and "input -50..50" in report
    assert "leaky: backend=leaky" in report and "limits: none" in report
    assert report.endswith("2 rig(s) valid (nothing was driven)")
    with pytest.raises(StationError) as info:
        check_station(str(ROOT / "scenarios" / "stations" / "real.toml"))
    text = str(info.value)
    assert "nra: ERROR NI-DAQmx is not installed on this machine" in text
    assert "asvi: ERROR" in text and "mylab.asvi" in text
    assert "2 rig(s) checked, 2 failed" in text


def test_real_station_file_states_limits_for_every_rig():
    station = load_station(ROOT / "scenarios" / "stations" / "real.toml")
    for spec in station.rigs:
        assert Limits.from_table(spec.limits, rig=spec.name).missing_for_real() == [], spec.name
    nra = next(s for s in station.rigs if s.name == "nra")
    assert nra.backend == "nidaqmx.nra" and nra.params["oe_per_volt"] == [12.0, 12.0]


def test_nado_rig_check_and_serve_without_the_driver(tmp_path, capsys):
    from nado.cli import main

    good = write(tmp_path / "good.toml", """
        [rigs.echo]
        backend = "echo"
        limits = { max_field_oe = 5.0 }
        """)
    assert main(["rig", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "echo: backend=echo" in out and "max_field_oe=5" in out
    real = str(ROOT / "scenarios" / "stations" / "real.toml")
    assert main(["rig", "check", real]) == 1
    assert "nra: ERROR NI-DAQmx is not installed" in capsys.readouterr().err
    # serving a nidaqmx.nra rig on a machine without NI-DAQmx: one clear line at start
    assert main(["rig", "serve", real, "--bind", "inproc://test-limits-never"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nado: error: NI-DAQmx is not installed on this machine: install it, or use "
                   "backend = 'physics.nra' to emulate the rig"]
