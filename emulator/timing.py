"""Instrument timing of the emulated rigs: the constants (with sources) and a simpy timeline.

All timing constants live here, as frozen dataclasses whose fields a station
overrides through the rig's ``timing`` table::

    [rigs.nra]
    backend = "physics.nra"
    clock = "realtime"        # or "virtual" (default)
    speed = 50.0              # realtime only: replies take instrument_s / speed
    [rigs.nra.timing]
    rotation_hz = 32.0
    request_overhead_s = 0.1

NRA (Vidamour et al. / the NADO paper, Methods "Electrical transport measurements"):
rotating field at ``rotation_hz`` = 64 Hz, so one input step = one rotation =
15.625 ms; DAQ sampling 2 MHz; digital lock-in with a 320 Hz low-pass, downsampled
to 3.2 kHz = 50 samples per rotation. Reset (Methods "Physical systems as dynamic
nodes"): one rotation at 80 Oe, then one settle rotation. Lock-in settling: five
time constants of the 320 Hz low-pass, 5 / (2 pi 320 Hz) = 2.49 ms, once per
experiment. Per-request overhead (DAQ task set-up, waveform upload): 50 ms,
an estimate. Per experiment:
``reset_s + settle_s + T * step_s``; per drive: ``request_overhead_s + B * that``.

ASVI (Gartside et al. 2022; Stenning et al. 2024; the NADO paper, Methods
"Spectral fingerprinting"): FMR swept in 10 MHz steps; the DC field modulated at
490 Hz, read by lock-in. Dwell per frequency point: ``fmr_dwell_periods`` = 10
modulation periods (20.4 ms, an estimate for the lock-in time constant). The
spectrum spans ``fmr_f_min_ghz``..``fmr_f_max_ghz`` (set by the rig). Field
ramps of the magnet at ``field_ramp_oe_per_s`` = 100 Oe/s with
``field_settle_s`` = 0.5 s after each set point (estimates for a PPMS-class
magnet). One step: bias -> +s -> -s -> bias, then a spectrum. Reset: linear ramp
to 235 Oe and back to the bias, then a spectrum (the initial observable).
Per-request overhead 0.5 s (instrument I/O).

Clock modes (:class:`Timeline`):

- ``virtual`` (default): a :class:`simpy.Environment` runs as fast as it can;
  ``instrument_s`` is the simulated time, what the real instrument would need.
- ``realtime``: :class:`simpy.rt.RealtimeEnvironment` with ``factor = 1/speed``;
  the drive really takes ``instrument_s / speed`` of wall time.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import simpy
import simpy.rt

from bridge.errors import RigError

from .errors import ConfigError

CLOCKS = ("virtual", "realtime")
STOP_CHECK_S = 0.05   # realtime clock: a stop request ends a drive within this many wall seconds


class DriveStopped(RigError):
    """A drive ended early because its rig was asked to stop (``interrupt()``, server shutdown)."""

    def __init__(self, message: str):
        super().__init__("RIG_FAULT", message)
#: Above this many experiments a drive's timeline groups experiments into chunks,
#: so the number of simpy events stays bounded (the total time is unchanged).
MAX_TIMELINE_EVENTS = 2048


@dataclass(frozen=True)
class NRATiming:
    """Timing constants of the NRA measurement, seconds unless named otherwise."""

    rotation_hz: float = 64.0            # rotating field frequency (paper, Methods)
    daq_hz: float = 2.0e6                # NI DAQ sampling rate (paper, Methods)
    lockin_hz: float = 3.2e3             # rate after lock-in and downsampling (paper, Methods)
    lockin_cutoff_hz: float = 320.0      # digital low-pass cut-off (paper, Methods)
    lockin_settle_tc: float = 5.0        # time constants waited once per experiment
    reset_rotations: int = 1             # rotations at the reset field (paper: one at 80 Oe)
    settle_rotations: int = 1            # then one step at the settle field
    request_overhead_s: float = 0.05     # DAQ task set-up + waveform upload (estimate)

    @property
    def step_s(self) -> float:
        """One input step = one field rotation."""
        return 1.0 / self.rotation_hz

    @property
    def samples_per_step(self) -> int:
        """Lock-in output samples per rotation (50 at 3.2 kHz / 64 Hz)."""
        return int(round(self.lockin_hz / self.rotation_hz))

    @property
    def daq_samples_per_step(self) -> int:
        return int(round(self.daq_hz / self.rotation_hz))

    @property
    def settle_s(self) -> float:
        return self.lockin_settle_tc / (2 * math.pi * self.lockin_cutoff_hz)

    @property
    def reset_s(self) -> float:
        return (self.reset_rotations + self.settle_rotations) * self.step_s

    def experiment_s(self, n_steps: int) -> float:
        return self.reset_s + self.settle_s + n_steps * self.step_s

    def continue_s(self, n_steps: int) -> float:
        """An experiment that continues the previous state (``reset=False``): no reset."""
        return self.settle_s + n_steps * self.step_s


@dataclass(frozen=True)
class ASVITiming:
    """Timing constants of the ASVI measurement, seconds unless named otherwise."""

    fmr_step_mhz: float = 10.0           # RF frequency sweep step (paper, Methods)
    modulation_hz: float = 490.0         # DC field modulation for the lock-in (paper, Methods)
    fmr_dwell_periods: float = 10.0      # lock-in dwell per frequency point, in modulation periods
    field_ramp_oe_per_s: float = 100.0   # magnet ramp rate (estimate, PPMS-class magnet)
    field_settle_s: float = 0.5          # wait after each field set point (estimate)
    request_overhead_s: float = 0.5      # instrument I/O per request (estimate)

    @property
    def dwell_s(self) -> float:
        return self.fmr_dwell_periods / self.modulation_hz

    def sweep_s(self, f_min_ghz: float, f_max_ghz: float) -> float:
        """One FMR spectrum: (span / step + 1) frequency points times the dwell."""
        n_points = int(round((f_max_ghz - f_min_ghz) * 1e3 / self.fmr_step_mhz)) + 1
        return n_points * self.dwell_s

    def loop_s(self, s_oe: np.ndarray, bias_oe: float) -> np.ndarray:
        """Field path bias -> +s -> -s -> bias for amplitudes ``s_oe`` (any shape), seconds."""
        s = np.asarray(s_oe, dtype=np.float64)
        path = np.abs(s - bias_oe) + 2 * s + np.abs(bias_oe + s)
        return path / self.field_ramp_oe_per_s + 3 * self.field_settle_s

    def reset_s(self, saturation_oe: float, bias_oe: float) -> float:
        """Linear ramp bias -> saturation -> bias."""
        path = abs(saturation_oe - bias_oe) + abs(saturation_oe - bias_oe)
        return path / self.field_ramp_oe_per_s + 2 * self.field_settle_s


def make_timing(cls, overrides: dict[str, Any] | None):
    """Build a timing dataclass from station ``overrides``; unknown or invalid keys raise ConfigError."""
    if overrides is None:
        return cls()
    if not isinstance(overrides, dict):
        raise ConfigError(f"timing must be a table of {cls.__name__} fields, got {type(overrides).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    clean = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"timing.{key} is not a timing constant; known: {sorted(fields)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"timing.{key} must be a finite number, got {value!r}")
        if value < 0 or (value == 0 and key not in ("request_overhead_s", "field_settle_s",
                                                    "lockin_settle_tc")):
            raise ConfigError(f"timing.{key} must be > 0, got {value!r}")
        if fields[key].type in ("int", int):
            if int(value) != value:
                raise ConfigError(f"timing.{key} must be a whole number, got {value!r}")
            value = int(value)
        clean[key] = value
    return cls(**clean)


def check_clock(clock: Any, speed: Any) -> tuple[str, float]:
    """Validate the station's ``clock`` and ``speed`` parameters."""
    if clock not in CLOCKS:
        raise ConfigError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed) \
            or speed <= 0:
        raise ConfigError(f"speed must be a finite number > 0 (realtime replies take "
                          f"instrument_s / speed), got {speed!r}")
    return clock, float(speed)


class Timeline:
    """A rig's instrument timeline on simpy: runs the phases of a drive, returns seconds."""

    def __init__(self, clock: str = "virtual", speed: float = 1.0, stop: threading.Event | None = None):
        self.clock, self.speed = check_clock(clock, speed)
        self.stop = stop if stop is not None else threading.Event()   # set: end the running drive
        self.total_s = 0.0   # instrument time accumulated over the rig's life
        self.log: list[tuple[str, float, float]] = []   # the last drive's phases

    def _env(self) -> simpy.Environment:
        if self.clock == "realtime":
            return simpy.rt.RealtimeEnvironment(factor=1.0 / self.speed, strict=False)
        return simpy.Environment()

    def run(self, overhead_s: float, experiments: Sequence[Sequence[tuple[str, float]]]) -> float:
        """Run one drive: the request overhead, then each experiment's phases in order.

        experiments: per experiment, its phases as ``(label, seconds)`` (e.g.
        ``("reset", 0.031)``, ``("rotations", 0.3125)``). Each phase is one simpy
        timeout, logged in :attr:`log` as ``(label, start_s, end_s)``; when a drive
        has more than :data:`MAX_TIMELINE_EVENTS` phases, experiments are grouped
        into that many blocks (the total time is unchanged; the log then holds
        the blocks). Returns the instrument seconds the drive took.

        With the realtime clock the wait is cut into pieces of at most
        :data:`STOP_CHECK_S` wall seconds; when :attr:`stop` is set the drive ends
        there with :class:`DriveStopped` (a server shutting down).
        """
        env = self._env()
        n_phases = sum(len(e) for e in experiments)
        if n_phases <= MAX_TIMELINE_EVENTS:
            blocks = [(label, float(sec)) for e in experiments for label, sec in e]
        else:
            per_exp = np.array([sum(float(sec) for _, sec in e) for e in experiments])
            groups = np.array_split(np.arange(len(per_exp)), MAX_TIMELINE_EVENTS)
            blocks = [(f"experiments {g[0]}-{g[-1]}", float(per_exp[g].sum())) for g in groups if len(g)]
        log: list[tuple[str, float, float]] = []

        piece = STOP_CHECK_S * self.speed if self.clock == "realtime" else math.inf   # instrument s

        def wait(env, seconds):
            while seconds > 0:
                if self.stop.is_set():
                    raise DriveStopped("the drive was stopped (the server is shutting down); retry it "
                                       "on a running server")
                step = min(seconds, piece)
                yield env.timeout(step)
                seconds -= step

        def protocol(env):
            start = env.now
            yield from wait(env, overhead_s)
            log.append(("request overhead", start, env.now))
            for label, seconds in blocks:                 # one after another, as on the instrument
                start = env.now
                yield from wait(env, seconds)
                log.append((label, start, env.now))

        env.run(until=env.process(protocol(env)))
        self.log = log
        elapsed = float(env.now)
        self.total_s += elapsed
        return elapsed
