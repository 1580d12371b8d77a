"""The NI-DAQ nanoring rig without hardware: a fake task factory plays the emulated NRA back
through the coil-and-carrier chain (bridge.backends.daq.fake).

Signal-path tolerance: per-step outputs within ``0.03 * |largest jump| + 0.02 ohm`` of the
device's per-rotation resistance (lock-in smear between rotations ~2 % of a jump, white
noise 2 mV rms at 2 MHz ~0.01 ohm per rotation mean).
"""

import numpy as np
import pytest

from bridge.backends.daq import hardware
from bridge.backends.daq.fake import FakeTaskFactory
from bridge.backends.daq.nra import DaqNRARig
from bridge.errors import BadInput, OutOfRange, RigError, StationError
from bridge.limits import guard
from bridge.station import build_rigs, parse_station
from emulator.nra import NRARig

CAL = (12.0, 12.0)
LIMITS = {"max_field_oe": 80.0, "max_coil_v": 8.0, "max_slew_oe_per_s": 150_000.0}
AI_SPR, AO_SPR = 31_250, 3_125


def emulated_response(seed: int = 5):
    """The device: per-rotation field amplitudes (Oe) -> resistance (ohm), from the emulated NRA."""
    emu = NRARig(seed=seed)

    def response(amps: np.ndarray) -> np.ndarray:
        a = np.clip(np.asarray(amps, dtype=np.float64), 0.0, 80.0)[None, :, None]
        return emu.drive(a, seed=seed).outputs[0, :, 0]
    return response


def make_rig(fake=None, *, limits=LIMITS, **kw):
    fake = fake or FakeTaskFactory(emulated_response(), oe_per_volt=CAL, noise_v=2e-3, mod_ohm=0.3)
    rig = DaqNRARig("nra", oe_per_volt=CAL, task_factory=fake, **kw)
    return (guard(rig, limits) if limits is not None else rig), fake


def tasks(fake, name):
    return [t for t in fake.tasks if t.name == name]


def test_configuration_rates_samples_triggers_and_ranges():
    rig, fake = make_rig()
    x = np.random.default_rng(1).uniform(20.0, 40.0, (2, 5, 1))
    rig.drive(x)
    n_rot = 1 + 2 + 5 + 1  # lead-in, reset (80 Oe rotation + step at the maximum), steps, ramp-down
    ais, aos = tasks(fake, "nado-nra-ai"), tasks(fake, "nado-nra-ao")
    assert len(ais) == len(aos) == 2  # B experiments, one after another
    for ai, ao in zip(ais, aos):
        assert ai.channels == [{"physical": "Dev1/ai0", "min": -5.0, "max": 5.0,
                                "terminal": hardware_terminal("DIFF")}]
        assert ai.timing_cfg["rate"] == 2e6 and ai.timing_cfg["samps_per_chan"] == n_rot * AI_SPR
        assert str(ai.timing_cfg["sample_mode"]).endswith("FINITE")
        # AO: both coils, range narrowed to the station's max_coil_v, started by the AI start trigger
        assert [c["physical"] for c in ao.channels] == ["Dev1/ao0", "Dev1/ao1"]
        assert all(c["min"] == -8.0 and c["max"] == 8.0 for c in ao.channels)
        assert ao.timing_cfg["rate"] == 200_000.0 and ao.timing_cfg["samps_per_chan"] == n_rot * AO_SPR
        assert ao.trigger["source"] == "/Dev1/ai/StartTrigger" and str(ao.trigger["edge"]).endswith("RISING")
        assert ao.written.shape == (2, n_rot * AO_SPR)
        assert np.abs(ao.written).max() <= 8.0
        slew = np.abs(np.diff(ao.written, axis=1)).max() * 200_000.0 * CAL[0]
        assert slew <= LIMITS["max_slew_oe_per_s"]
        assert np.all(ao.written[:, -AO_SPR // 2:] == 0.0)  # ramped down: the last samples are zero
        assert ai.closed and ao.closed
    # arm the AO before the AI fires the shared trigger, then read
    ops = [(n, op) for n, op, _ in fake.log if op in ("start", "read")]
    assert ops[:3] == [("nado-nra-ao", "start"), ("nado-nra-ai", "start"), ("nado-nra-ai", "read")]
    # the field the device saw: reset at 80 Oe, the maximum, the inputs, then zero
    assert np.allclose(fake.amplitudes[0], np.r_[0, 80, 80, x[0, :, 0], 0], atol=1e-9)
    # after the drive the guard made the rig safe: 0 V written on demand, outputs at zero
    assert fake.log[-2][:2] == ("nado-nra-zero", "write") and np.all(fake.ao_now == 0.0)


def hardware_terminal(name):
    from nidaqmx.constants import TerminalConfiguration
    return TerminalConfiguration[name]


def test_full_signal_path_matches_the_device():
    rig, fake = make_rig()
    desc = rig.describe()
    assert desc["emulated"] is False and desc["backend"] == "nidaqmx.nra"
    assert desc["input"] == {"dims": [1], "units": "Oe", "min": 0.0, "max": 80.0}
    assert desc["output"] == {"dims": [1], "units": "ohm"} and desc["step_s"] == 1 / 64
    assert desc["limits"] == LIMITS
    x = np.random.default_rng(2).uniform(15.0, 45.0, (2, 12, 1))
    res = rig.drive(x)
    assert res.outputs.shape == (2, 12, 1) and res.initial.shape == (2, 1)
    assert res.instrument_s == pytest.approx(2 * (1 + 2 + 12 + 1) / 64)
    for b in range(2):
        truth = fake.resistances[b]  # the device's resistance in each rotation
        steps = truth[3:15]
        tol = 0.03 * np.abs(np.diff(truth[2:16])).max() + 0.02
        assert np.abs(res.outputs[b, :, 0] - steps).max() < tol
        assert abs(res.initial[b, 0] - truth[2]) < tol  # after the reset's last step
    assert np.std(fake.resistances[0][3:15]) > 0.1  # the emulated device really responded


def test_fifty_samples_per_rotation():
    rig, _ = make_rig(n_out=50)
    assert rig.describe()["output"]["dims"] == [50]
    mean_rig, _ = make_rig()
    x = np.random.default_rng(3).uniform(20.0, 40.0, (1, 4, 1))
    got = rig.drive(x).outputs
    assert got.shape == (1, 4, 50)
    assert np.allclose(got.mean(axis=2), mean_rig.drive(x).outputs[..., 0], atol=0.02)


def test_reset_false_continues_one_experiment_without_the_reset_protocol():
    rig, fake = make_rig()
    x = np.random.default_rng(4).uniform(20.0, 40.0, (1, 3, 1))
    with pytest.raises(BadInput, match="driven yet"):
        rig.drive(x, reset=False)
    first = rig.drive(x)
    with pytest.raises(BadInput, match="B = 1"):
        rig.drive(np.repeat(x, 2, axis=0), reset=False)
    second = rig.drive(x, reset=False)
    assert np.allclose(fake.amplitudes[-1], np.r_[0, x[0, :, 0], 0], atol=1e-9)  # no reset rotations
    assert np.array_equal(second.initial, first.outputs[:, -1])


def test_requests_outside_limits_never_reach_the_daq():
    rig, fake = make_rig()
    with pytest.raises(OutOfRange):
        rig.drive(np.full((1, 3, 1), 85.0))
    assert fake.tasks == []
    with pytest.raises(StationError, match="reset protocol"):  # 80 Oe / 12 Oe/V = 6.7 V > 5 V
        make_rig(limits={**LIMITS, "max_coil_v": 5.0})
    tight, fake2 = make_rig(limits={**LIMITS, "max_coil_v": 5.0}, reset_field_oe=60.0, input_max_oe=60.0)
    assert tight.describe()["input"]["max"] == pytest.approx(60.0)  # 5 V x 12 Oe/V
    with pytest.raises(OutOfRange):
        tight.drive(np.full((1, 2, 1), 61.0))
    tight.drive(np.full((1, 2, 1), 59.0))
    assert all(c["max"] == 5.0 for t in fake2.tasks if t.kind == "ao" for c in t.channels)


def test_real_rig_without_limits_refuses_to_start():
    rig, _ = make_rig(limits=None)
    with pytest.raises(StationError, match="max_field_oe, max_coil_v, max_slew_oe_per_s"):
        guard(rig, None)
    with pytest.raises(StationError, match="max_slew_oe_per_s"):
        guard(rig, {"max_field_oe": 80.0, "max_coil_v": 8.0})



def test_daq_error_mid_drive_ramps_down_and_returns_rig_fault(served):
    k = AO_SPR * 3 + AO_SPR // 3  # failure a third into the reset's second rotation: coils energised
    fake = FakeTaskFactory(emulated_response(), oe_per_volt=CAL, fail_on=("read", 1), fail_generated=k)
    rig, _ = make_rig(fake)
    client = served(rig, "nra")
    x = np.full((1, 4, 1), 30.0)
    with pytest.raises(RigError) as info:
        client.drive(x)
    assert info.value.code == "RIG_FAULT" and "ramped to zero" in info.value.message
    ao = tasks(fake, "nado-nra-ao")[0]
    held = ao.written[:, k - 1]
    assert np.abs(held).max() > 1.0  # the fault really left the coils energised
    ramp = tasks(fake, "nado-nra-ramp")[0].written
    assert np.allclose(ramp[:, 0], held) and np.all(ramp[:, -1] == 0.0)
    assert np.abs(np.diff(ramp, axis=1)).max() * 200_000.0 * CAL[0] <= LIMITS["max_slew_oe_per_s"]
    assert np.all(fake.ao_now == 0.0) and all(t.closed for t in fake.tasks)
    # the rig recovers: the next drive works
    res = client.drive(x)
    assert res.outputs.shape == (1, 4, 1)


def test_daq_error_surfaces_as_rig_fault_without_the_guard_too():
    fake = FakeTaskFactory(emulated_response(), oe_per_volt=CAL, fail_on=("wait_until_done", 1),
                           fail_generated=10)
    rig, _ = make_rig(fake, limits=None)
    with pytest.raises(RigError, match="RIG_FAULT"):
        rig.drive(np.full((1, 2, 1), 30.0))
    assert np.all(fake.ao_now == 0.0)


def test_without_ni_daqmx_construction_fails_with_one_clear_line():
    with pytest.raises(StationError) as info:
        DaqNRARig("nra", oe_per_volt=CAL)
    assert isinstance(info.value, hardware.DaqNotInstalled)
    assert str(info.value) == ("NI-DAQmx is not installed on this machine: install it, or use "
                               "backend = 'physics.nra' to emulate the rig")
    station = parse_station({"rigs": {"nra": {"backend": "nidaqmx.nra", "oe_per_volt": [12.0, 12.0],
                                              "limits": LIMITS}}})
    with pytest.raises(StationError, match="^NI-DAQmx is not installed on this machine") as info:
        build_rigs(station)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kw, match", [
    ({"oe_per_volt": None}, "oe_per_volt"),
    ({"ao_rate_hz": 200_001.0}, "whole multiple"),
    ({"n_out": 7}, "n_out"),
    ({"carrier_hz": 1.5e6}, "carrier_hz"),
    ({"input_min_oe": 90.0}, "input_min_oe"),
    ({"ao_channels": ["ao0"]}, "two outputs"),
    ({"ai_terminal": "SINGLE"}, "ai_terminal"),
])
def test_bad_parameters_are_station_errors(kw, match):
    fake = FakeTaskFactory(emulated_response(), oe_per_volt=CAL)
    params = {"oe_per_volt": CAL, "task_factory": fake, **kw}
    with pytest.raises(StationError, match=match):
        DaqNRARig("nra", **params)


def test_make_safe_from_another_thread_stops_a_drive_between_experiments():
    import threading

    started = threading.Event()
    device = emulated_response()

    def slow(amps):
        started.set()
        rig.rig._abort.wait(10.0)  # an acquisition in flight until make_safe() asks the drive to stop
        return device(amps)

    fake = FakeTaskFactory(slow, oe_per_volt=CAL)
    rig, _ = make_rig(fake)
    errors = []

    def run():
        try:
            rig.drive(np.full((3, 2, 1), 30.0))
        except RigError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    assert started.wait(10.0)
    rig.make_safe()  # what a lease watchdog or SIGTERM handler calls
    t.join(10.0)
    assert len(errors) == 1 and errors[0].code == "RIG_FAULT" and "after 1 of 3" in errors[0].message
    assert len(tasks(fake, "nado-nra-ai")) == 1 and np.all(fake.ao_now == 0.0)
