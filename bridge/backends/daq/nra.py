"""``backend = "nidaqmx.nra"``: the nanoring-array rig on an NI DAQ card (paper, Methods).

Hardware: two analog outputs drive the two coil pairs through voltage-controlled
bipolar supplies (Kepco BOP 36-6D); one analog input samples the voltage across
the device at 2 MHz while an external generator and current source pass 2 mA at
13,523 Hz through it. Each input step is one rotation of the field at 64 Hz
with the step's amplitude (Oe), converted to volts with the station's
calibration ``oe_per_volt`` (per axis; required: measure it with a gaussmeter).

A drive of ``(B, T, 1)`` inputs runs the B experiments one after another (a real
rig has one state). Each experiment is one hardware-timed acquisition (see
:mod:`bridge.backends.daq.waveforms` and :mod:`bridge.backends.daq.hardware`): a lead-in rotation
at zero field, the reset protocol (one rotation at ``reset_field_oe`` = 80 Oe, then
one step at ``reset_settle_oe`` = ``input_max_oe``; skipped with ``reset=False``, which needs B = 1
and continues from the previous drive, starting from zero field), the T steps,
and a ramp-down rotation that ends at 0 V. The digital lock-in
(:mod:`bridge.backends.daq.lockin`) turns the AI samples into 50 samples per rotation; the
per-step observable is their mean resistance in ohm (``n_out = 1``,
what the emulated NRA reports) or all 50 (``n_out = 50``). ``initial`` is the
observable of the reset's last step. ``seed`` is ignored: hardware noise cannot
be seeded.

Any failure during an acquisition ramps the coils to zero and raises
``RigError("RIG_FAULT", ...)``. Without NI-DAQmx, construction raises
:class:`bridge.backends.daq.hardware.DaqNotInstalled` with one line saying what to do.

Station example (the limits are required for this backend)::

    [rigs.nra]
    backend = "nidaqmx.nra"
    device = "Dev1"
    oe_per_volt = [12.0, 12.0]
    limits = { max_field_oe = 80.0, max_coil_v = 8.0, max_slew_oe_per_s = 150000.0 }
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import lockin
from ...errors import BadInput, RigError, StationError
from ...limits import CoilPlan, Limits
from ...rig import DriveResult, check_inputs
from ...values import positive
from . import waveforms as wf
from .hardware import DaqIO, TaskFactory, default_task_factory, probe_driver


def _positive(name: str, value: Any) -> float:
    return positive(f"nidaqmx.nra: {name}", value)


class DaqNRARig:
    """The NI-DAQ nanoring rig; see the module docstring. Frequencies in Hz, fields in Oe."""

    kind = "nra"

    def __init__(self, name: str = "nra", *, device: str = "Dev1",
                 ao_channels: tuple[str, str] | list[str] = ("ao0", "ao1"), ai_channel: str = "ai0",
                 oe_per_volt: tuple[float, float] | list[float] | None = None,
                 carrier_hz: float = lockin.CARRIER_HZ, current_a: float = lockin.CURRENT_A,
                 ai_rate_hz: float = lockin.SAMPLE_RATE_HZ, ao_rate_hz: float = 200_000.0,
                 rotation_hz: float = lockin.ROTATION_HZ, cutoff_hz: float = lockin.CUTOFF_HZ,
                 lockin_rate_hz: float = lockin.OUTPUT_RATE_HZ, input_min_oe: float = 0.0,
                 input_max_oe: float = 80.0, reset_field_oe: float = 80.0,
                 reset_settle_oe: float | None = None, n_out: int = 1,
                 transition_fraction: float = 0.1, lead_in_rotations: int = 1,
                 ao_range_v: float = 10.0, ai_range_v: float = 5.0, ai_terminal: str = "DIFF",
                 start_trigger: str | None = None, task_factory: TaskFactory | None = None):
        if task_factory is None:
            self.driver_version = probe_driver(device)  # DaqNotInstalled: one clear line, at start
            task_factory = default_task_factory
        else:
            self.driver_version = "injected"
        self.name = name
        if oe_per_volt is None or len(oe_per_volt) != 2:
            raise StationError(f"rig '{name}' (nidaqmx.nra): state oe_per_volt = [x, y], the field per "
                               f"volt of each coil axis (Oe/V, measured with a gaussmeter); got {oe_per_volt!r}")
        if len(ao_channels) != 2:
            raise StationError(f"rig '{name}': ao_channels must name two outputs (x and y coils), "
                               f"got {ao_channels!r}")
        self.oe_per_volt = np.array([_positive("oe_per_volt", v) for v in oe_per_volt])
        self.carrier_hz = _positive("carrier_hz", carrier_hz)
        self.current_a = _positive("current_a", current_a)
        self.ai_rate_hz = _positive("ai_rate_hz", ai_rate_hz)
        self.ao_rate_hz = _positive("ao_rate_hz", ao_rate_hz)
        self.rotation_hz = _positive("rotation_hz", rotation_hz)
        self.cutoff_hz = _positive("cutoff_hz", cutoff_hz)
        self.lockin_rate_hz = _positive("lockin_rate_hz", lockin_rate_hz)
        self.reset_field_oe = _positive("reset_field_oe", reset_field_oe)
        self.input_max_oe = _positive("input_max_oe", input_max_oe)
        self.reset_settle_oe = _positive("reset_settle_oe", self.input_max_oe if reset_settle_oe is None
                                         else reset_settle_oe)
        self.input_min_oe = float(input_min_oe)
        if not 0 <= self.input_min_oe < self.input_max_oe:
            raise StationError(f"rig '{name}': need 0 <= input_min_oe < input_max_oe, got "
                               f"{input_min_oe}..{input_max_oe} (the input is a field magnitude)")
        if not 0 < transition_fraction <= 0.5:
            raise StationError(f"rig '{name}': transition_fraction must be in (0, 0.5], got {transition_fraction}")
        if not (isinstance(lead_in_rotations, int) and lead_in_rotations >= 1):
            raise StationError(f"rig '{name}': lead_in_rotations must be an integer >= 1")
        try:
            self.ao_spr = wf.samples_per_rotation(self.ao_rate_hz, self.rotation_hz)
            self.ai_spr = wf.samples_per_rotation(self.ai_rate_hz, self.rotation_hz)
            self.lockin_spr = wf.samples_per_rotation(self.lockin_rate_hz, self.rotation_hz)
            lockin.decimation_factor(self.ai_rate_hz, self.lockin_rate_hz)
        except ValueError as exc:
            raise StationError(f"rig '{name}': {exc}") from None
        if n_out not in (1, self.lockin_spr):
            raise StationError(f"rig '{name}': n_out must be 1 (rotation mean) or {self.lockin_spr} "
                               f"(lock-in samples per rotation), got {n_out!r}")
        if not self.cutoff_hz < self.carrier_hz < self.ai_rate_hz / 2:
            raise StationError(f"rig '{name}': need cutoff_hz < carrier_hz < ai_rate_hz / 2, got "
                               f"{cutoff_hz:g}, {carrier_hz:g}, {ai_rate_hz:g}")
        if ai_terminal not in ("DIFF", "RSE", "NRSE", "PSEUDO_DIFF", "DEFAULT"):
            raise StationError(f"rig '{name}': ai_terminal must be DIFF, RSE, NRSE, PSEUDO_DIFF or "
                               f"DEFAULT, got {ai_terminal!r}")
        self.n_out = int(n_out)
        self.observable = "mean" if self.n_out == 1 else "samples"
        self.transition_fraction = float(transition_fraction)
        self.lead_in = int(lead_in_rotations)
        self.device, self.ai_channel = device, ai_channel
        self.io = DaqIO(task_factory=task_factory, device=device, ao_channels=tuple(ao_channels),
                        ai_channel=ai_channel, ao_rate_hz=self.ao_rate_hz, ai_rate_hz=self.ai_rate_hz,
                        ao_range_v=_positive("ao_range_v", ao_range_v),
                        ai_range_v=_positive("ai_range_v", ai_range_v), ai_terminal=ai_terminal,
                        start_trigger=start_trigger)
        self.limits = Limits()
        self._last: np.ndarray | None = None  # observable the next reset=False drive starts from
        self._lock = threading.RLock()  # make_safe (a watchdog's thread) waits for a drive in flight
        self._abort = threading.Event()  # set by make_safe from another thread: stop between experiments
        self.drive_calls = 0

    # -- description ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        n_out = self.n_out
        return {
            "name": self.name, "kind": self.kind, "backend": "nidaqmx.nra",
            "source": f"daq://{self.device}/{self.ai_channel}", "emulated": False,
            "input": {"dims": [1], "units": "Oe", "min": self.input_min_oe, "max": self.input_max_oe},
            "output": {"dims": [n_out], "units": "ohm"},
            "step_s": 1.0 / self.rotation_hz,
            "observable": "AMR resistance, lock-in output averaged over the rotation"
                          if n_out == 1 else "AMR resistance, 50 lock-in samples per rotation",
            "reset": {"field_oe": self.reset_field_oe, "rotations": 1, "settle_oe": self.reset_settle_oe,
                      "seconds": 2.0 / self.rotation_hz},
            "calibration": {"oe_per_volt": self.oe_per_volt.tolist(), "ao_channels": list(self.io.ao_channels),
                            "ai_channel": self.ai_channel, "ao_rate_hz": self.ao_rate_hz,
                            "ai_rate_hz": self.ai_rate_hz, "carrier_hz": self.carrier_hz,
                            "current_a": self.current_a, "cutoff_hz": self.cutoff_hz,
                            "lockin_rate_hz": self.lockin_rate_hz, "ao_range_v": self.io.ao_range_v,
                            "driver": self.driver_version},
        }

    def apply_limits(self, limits: Limits) -> None:
        """Called by :func:`bridge.limits.guard`: narrow the AO channel range to +-max_coil_v."""
        self.limits = limits
        if limits.max_coil_v is not None:
            self.io.ao_range_v = min(self.io.ao_range_v, limits.max_coil_v)

    # -- waveforms --------------------------------------------------------------------------
    def _amplitudes(self, steps_oe: np.ndarray, reset: bool) -> np.ndarray:
        return wf.experiment_amplitudes(steps_oe, reset=reset, reset_oe=self.reset_field_oe,
                                        reset_max_oe=self.reset_settle_oe, lead_in=self.lead_in)

    def _volts(self, amplitudes: np.ndarray) -> np.ndarray:
        return wf.coil_waveforms(amplitudes, rate_hz=self.ao_rate_hz, rotation_hz=self.rotation_hz,
                                 oe_per_volt=self.oe_per_volt, transition_fraction=self.transition_fraction)

    def coil_plan(self, inputs: np.ndarray, *, reset: bool = True) -> CoilPlan:
        """The coil voltages a drive of ``inputs`` ``(B, T, 1)`` would write, experiments back to back."""
        x = np.asarray(inputs, dtype=np.float64)
        volts = np.concatenate([self._volts(self._amplitudes(x[b, :, 0], reset)) for b in range(x.shape[0])])
        return CoilPlan(volts=volts, rate_hz=self.ao_rate_hz, oe_per_volt=self.oe_per_volt.copy())

    # -- driving ----------------------------------------------------------------------------
    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        """Run B experiments serially; outputs ``(B, T, n_out)`` ohm. ``seed`` is ignored."""
        x = check_inputs(inputs, self.describe())
        B, T, _ = x.shape
        if not reset:
            if B != 1:
                raise BadInput(f"a real rig has one state: reset=False needs B = 1, got B = {B}")
            if self._last is None:
                raise BadInput("reset=False continues the previous drive, but this rig has not been "
                               "driven yet; drive with reset=True first")
        off = wf.step_offset(reset=reset, lead_in=self.lead_in)
        n_out = self.describe()["output"]["dims"][0]
        outputs = np.empty((B, T, n_out))
        initial = np.empty((B, n_out))
        instrument_s = 0.0
        with self._lock:
            self.drive_calls += 1
            self._abort.clear()
            for b in range(B):
                if self._abort.is_set():
                    self._last = None
                    raise RigError("RIG_FAULT", f"drive aborted after {b} of {B} experiments: the rig "
                                   "was made safe meanwhile (lease expired or shutdown); drive again")
                amps = self._amplitudes(x[b, :, 0], reset)
                volts = self._volts(amps)
                n_ai = amps.shape[0] * self.ai_spr
                try:
                    raw = self.io.acquire(volts, n_ai)
                except Exception as exc:
                    self._fault(exc)
                obs = lockin.lockin_steps(raw, carrier_hz=self.carrier_hz, sample_rate_hz=self.ai_rate_hz,
                                          cutoff_hz=self.cutoff_hz, output_rate_hz=self.lockin_rate_hz,
                                          rotation_hz=self.rotation_hz, current_a=self.current_a,
                                          observable=self.observable)
                outputs[b] = obs[off:off + T]
                initial[b] = obs[off - 1] if reset else self._last
                self._last = outputs[b, -1].copy()
                instrument_s += n_ai / self.ai_rate_hz
        return DriveResult(outputs=outputs, initial=initial, instrument_s=instrument_s)

    def _fault(self, exc: Exception) -> None:
        self._last = None  # the device state is unknown now
        try:
            self.make_safe()
            safe = "the coils were ramped to zero"
        except Exception as safe_exc:
            safe = f"ramping the coils to zero ALSO failed ({safe_exc}): switch the supplies off"
        raise RigError("RIG_FAULT", f"DAQ error during the drive on {self.device} "
                       f"({type(exc).__name__}: {exc}); {safe}; check the device and wiring, then "
                       f"retry with reset=True") from exc

    def make_safe(self) -> None:
        """Ramp both coil outputs to 0 V (bounded by the station's slew limit). Idempotent.

        Thread-safe: called from another thread while a drive runs, it stops the drive
        after the experiment in flight (whose waveform itself ends at 0 V) and waits
        for it; the drive then raises ``RIG_FAULT``.
        """
        if not self._lock.acquire(blocking=False):
            self._abort.set()
            self._lock.acquire()
        try:
            self.io.make_safe(oe_per_volt=self.oe_per_volt,
                              max_slew_oe_per_s=self.limits.max_slew_oe_per_s)
        finally:
            self._lock.release()

    def interrupt(self) -> None:
        """Ask a running drive to stop after the experiment in flight (whose waveform ends at 0 V).

        Thread-safe and immediate; a server that shuts down calls it, then :meth:`make_safe`.
        """
        self._abort.set()

    def close(self) -> None:
        """Make the coils safe; the rig holds no open task between drives."""
        self.make_safe()
