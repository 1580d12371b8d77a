"""Instrument timing of the emulated rigs: instrument_s follows the constants; realtime takes that long.

The realtime check allows the wall time to be 0.8x..1.6x the expected
instrument_s / speed, plus 0.3 s for a loaded 2-core machine.
"""
import math
import time

import numpy as np
import pytest

from emulator.asvi import ASVIRig
from emulator.errors import ConfigError
from emulator.nra import NRARig
from emulator.timing import ASVITiming, NRATiming, Timeline


def test_nra_constants_match_the_paper():
    t = NRATiming()
    assert t.step_s == 1 / 64 == 0.015625
    assert t.samples_per_step == 50                        # 3.2 kHz / 64 Hz
    assert t.daq_samples_per_step == 31_250                # 2 MHz / 64 Hz
    assert t.reset_s == 2 / 64                             # one rotation at 80 Oe + one settle step
    assert t.settle_s == pytest.approx(5 / (2 * math.pi * 320))


def test_nra_instrument_s_equals_the_constants():
    B, T = 7, 20
    rig = NRARig(seed=0)
    res = rig.drive(np.full((B, T, 1), 25.0), seed=1)
    per_exp = 2 / 64 + 5 / (2 * math.pi * 320) + T / 64
    assert res.instrument_s == pytest.approx(0.05 + B * per_exp, rel=1e-12)
    cont = rig.drive(np.full((B, 3, 1), 25.0), reset=False)
    assert cont.instrument_s == pytest.approx(0.05 + B * (5 / (2 * math.pi * 320) + 3 / 64), rel=1e-12)


def test_nra_timing_overrides_from_the_station():
    rig = NRARig(timing={"rotation_hz": 32.0, "request_overhead_s": 0.0, "reset_rotations": 2})
    res = rig.drive(np.full((2, 4, 1), 25.0), seed=0)
    assert res.instrument_s == pytest.approx(2 * (3 / 32 + rig.timing.settle_s + 4 / 32))
    for bad in ({"rotation_hz": 0}, {"warp": 1.0}, {"reset_rotations": 1.5}, {"daq_hz": "fast"}):
        with pytest.raises(ConfigError):
            NRARig(timing=bad)


def test_asvi_instrument_s_equals_the_constants():
    t = ASVITiming()
    sweep = (int(round((9.0 - 3.0) * 1e3 / 10.0)) + 1) * 10 / 490    # 601 points, 10 periods of 490 Hz
    bias, sat, rate, settle = 50.0, 235.0, 100.0, 0.5
    assert t.sweep_s(3.0, 9.0) == pytest.approx(sweep)
    x = np.array([[120.0, 180.0], [60.0, 200.0]])[:, :, None]
    res = ASVIRig(seed=0).drive(x, seed=1)
    loops = sum(abs(s - bias) + 2 * s + abs(s + bias) for s in x.ravel()) / rate + 4 * 3 * settle
    reset = 2 * ((2 * (sat - bias)) / rate + 2 * settle)
    assert res.instrument_s == pytest.approx(0.5 + reset + 6 * sweep + loops, rel=1e-12)


def test_virtual_clock_is_much_faster_than_the_instrument():
    rig = NRARig(seed=0)
    t0 = time.perf_counter()
    res = rig.drive(np.full((256, 20, 1), 25.0), seed=0)
    wall = time.perf_counter() - t0
    assert res.instrument_s > 50 * wall                     # bench measures the real ratio


@pytest.mark.parametrize("speed", [4.0])
def test_realtime_clock_takes_instrument_time_over_speed(speed):
    rig = NRARig(seed=0, clock="realtime", speed=speed)
    x = np.full((2, 20, 1), 25.0)
    expected = 0.05 + 2 * (2 / 64 + rig.timing.settle_s + 20 / 64)   # ~0.74 s instrument time
    t0 = time.perf_counter()
    res = rig.drive(x, seed=0)
    wall = time.perf_counter() - t0
    assert res.instrument_s == pytest.approx(expected)
    assert 0.8 * expected / speed <= wall <= 1.6 * expected / speed + 0.3, (wall, expected / speed)


def test_timeline_bounds_events_and_checks_clock():
    tl = Timeline("virtual")
    total = tl.run(1.0, [[("reset", 0.5), ("steps", 0.25)]] * 10_000)
    assert total == pytest.approx(1.0 + 7500.0)
    assert len(tl.log) == 1 + 2048                          # grouped into blocks
    small = tl.run(0.1, [[("reset", 0.5), ("steps", 0.25)]] * 3)
    assert small == pytest.approx(2.35)
    assert [p[0] for p in tl.log] == ["request overhead"] + ["reset", "steps"] * 3
    assert tl.log[-1][2] == pytest.approx(2.35)
    with pytest.raises(ConfigError, match="clock"):
        Timeline("sundial")
    with pytest.raises(ConfigError, match="speed"):
        Timeline("realtime", 0.0)
