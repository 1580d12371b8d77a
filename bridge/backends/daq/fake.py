"""A fake NI-DAQmx task factory: records configuration, plays a device back.

``FakeTaskFactory(response, *, oe_per_volt, ...)`` is a callable
``factory(name) -> FakeTask`` with the subset of the ``nidaqmx.Task`` API that
:mod:`bridge.backends.daq.hardware` uses. It records every task (channels with their
ranges, timing, start trigger, writes, calls in order) in ``.tasks`` and
``.log``, and tracks what the analog outputs hold (``.ao_now``).

When an AI task is read, it synthesises the samples through the
coil-and-carrier chain from what the AO task armed on that AI task's start
trigger wrote:

1. coil volts ``(S, 2)`` -> field with the *true* calibration ``oe_per_volt``
   -> the held field amplitude of each rotation (Oe);
2. ``response(amplitudes (n_rot,)) -> resistance (n_rot,)`` ohm (the device:
   any callable, e.g. built on the emulated NRA);
3. a resistance trace at the AI rate: each rotation's value plus an AMR
   modulation at twice the rotation frequency (``mod_ohm``, zero mean over a
   rotation, as the magnetisation follows the field);
4. the carrier: ``current_a * R(t) * sin(2 pi carrier_hz t + phase_rad)`` plus
   white noise of ``noise_v`` volts rms (seeded).

If the AO task was not armed on ``/DEV/ai/StartTrigger`` it starts late by
``misalign_s`` (as unsynchronised tasks would), so wiring mistakes show in the
data. ``fail_on=("read", 1)`` raises a ``nidaqmx.errors.DaqError`` on the first
call of that operation (``write``, ``start``, ``read``, ``wait_until_done``),
after ``fail_generated`` AO samples were generated.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from . import lockin
from .waveforms import field_amplitudes


class _Channels:
    def __init__(self, task: "FakeTask", kind: str):
        self._task, self._kind = task, kind

    def add_ai_voltage_chan(self, physical_channel: str, name_to_assign_to_channel: str = "",
                            terminal_config: Any = None, min_val: float = -5.0, max_val: float = 5.0,
                            **_: Any) -> None:
        self._task.kind = "ai"
        self._task.channels.append({"physical": physical_channel, "min": min_val, "max": max_val,
                                    "terminal": terminal_config})
        self._task.bench.log.append((self._task.name, "add_ai_voltage_chan", physical_channel))

    def add_ao_voltage_chan(self, physical_channel: str, name_to_assign_to_channel: str = "",
                            min_val: float = -10.0, max_val: float = 10.0, **_: Any) -> None:
        self._task.kind = "ao"
        self._task.channels.append({"physical": physical_channel, "min": min_val, "max": max_val})
        self._task.bench.log.append((self._task.name, "add_ao_voltage_chan", physical_channel))


class FakeTask:
    """One recorded task."""

    def __init__(self, bench: "FakeTaskFactory", name: str):
        self.bench, self.name = bench, name
        self.kind: str | None = None
        self.channels: list[dict[str, Any]] = []
        self.timing_cfg: dict[str, Any] | None = None
        self.trigger: dict[str, Any] | None = None
        self.written: np.ndarray | None = None  # (n_channels, S)
        self.started = self.closed = False
        self.ai_channels = _Channels(self, "ai")
        self.ao_channels = _Channels(self, "ao")
        self.timing = SimpleNamespace(cfg_samp_clk_timing=self._cfg_timing)
        self.triggers = SimpleNamespace(start_trigger=SimpleNamespace(cfg_dig_edge_start_trig=self._cfg_trig))
        self.out_stream = SimpleNamespace(total_samp_per_chan_generated=0)

    def _cfg_timing(self, rate: float, source: str = "", active_edge: Any = None,
                    sample_mode: Any = None, samps_per_chan: int = 1000) -> None:
        self.timing_cfg = {"rate": rate, "source": source, "sample_mode": sample_mode,
                           "samps_per_chan": samps_per_chan}
        self.bench.log.append((self.name, "cfg_samp_clk_timing", rate))

    def _cfg_trig(self, trigger_source: str, trigger_edge: Any = None) -> None:
        self.trigger = {"source": trigger_source, "edge": trigger_edge}
        self.bench.log.append((self.name, "cfg_dig_edge_start_trig", trigger_source))

    def _maybe_fail(self, op: str) -> None:
        self.bench.counts[op] = self.bench.counts.get(op, 0) + 1
        if self.bench.fail_on is not None and self.bench.fail_on == (op, self.bench.counts[op]):
            import nidaqmx.errors

            if self.kind == "ao":
                self.out_stream.total_samp_per_chan_generated = self.bench.fail_generated
            for t in self.bench.tasks:
                if t.kind == "ao" and t.started and t.written is not None:
                    k = min(self.bench.fail_generated, t.written.shape[1])
                    t.out_stream.total_samp_per_chan_generated = k
                    if k:
                        self.bench.ao_now = t.written[:, k - 1].copy()
            raise nidaqmx.errors.DaqError(f"fake DAQ failure in {op}", -200279, task_name=self.name)

    def write(self, data: Any, auto_start: Any = None, timeout: float = 10.0) -> int:
        self._maybe_fail("write")
        arr = np.asarray(data, dtype=np.float64)
        arr = arr.reshape(len(self.channels), -1)
        for i, ch in enumerate(self.channels):
            if arr[i].size and (arr[i].min() < ch["min"] or arr[i].max() > ch["max"]):
                import nidaqmx.errors

                raise nidaqmx.errors.DaqError(f"fake DAQ: value outside {ch['physical']}'s range "
                                              f"{ch['min']}..{ch['max']} V", -200561)
        self.written = arr
        self.bench.writes.append((self.name, arr.copy()))
        self.bench.log.append((self.name, "write", arr.shape))
        if auto_start is True:  # on-demand or self-started finite generation: runs to the end
            self.started = True
            self.bench.ao_now = arr[:, -1].copy()
            self.out_stream.total_samp_per_chan_generated = arr.shape[1]
        return arr.shape[1]

    def start(self) -> None:
        self._maybe_fail("start")
        self.started = True
        self.bench.log.append((self.name, "start", None))

    def read(self, number_of_samples_per_channel: int = 1, timeout: float = 10.0) -> np.ndarray:
        self._maybe_fail("read")
        self.bench.log.append((self.name, "read", number_of_samples_per_channel))
        return self.bench.synthesise(self, int(number_of_samples_per_channel))

    def wait_until_done(self, timeout: float = 10.0) -> None:
        self._maybe_fail("wait_until_done")
        if self.kind == "ao" and self.written is not None:
            self.out_stream.total_samp_per_chan_generated = self.written.shape[1]
            self.bench.ao_now = self.written[:, -1].copy()

    def close(self) -> None:
        self.closed = True
        self.bench.log.append((self.name, "close", None))


class FakeTaskFactory:
    """See the module docstring. Rates in Hz, resistance in ohm, volts in V."""

    def __init__(self, response: Callable[[np.ndarray], np.ndarray], *, oe_per_volt: Any,
                 device: str = "Dev1", ao_rate_hz: float = 200_000.0,
                 ai_rate_hz: float = lockin.SAMPLE_RATE_HZ, rotation_hz: float = lockin.ROTATION_HZ,
                 carrier_hz: float = lockin.CARRIER_HZ, current_a: float = lockin.CURRENT_A,
                 phase_rad: float = 0.7, mod_ohm: float = 0.0, noise_v: float = 0.0,
                 misalign_s: float = 3e-3, seed: int = 0, fail_on: tuple[str, int] | None = None,
                 fail_generated: int = 0):
        self.response = response
        self.oe_per_volt = np.asarray(oe_per_volt, dtype=np.float64)
        self.device = device
        self.ao_rate_hz, self.ai_rate_hz, self.rotation_hz = ao_rate_hz, ai_rate_hz, rotation_hz
        self.carrier_hz, self.current_a, self.phase_rad = carrier_hz, current_a, phase_rad
        self.mod_ohm, self.noise_v, self.misalign_s = mod_ohm, noise_v, misalign_s
        self.rng = np.random.default_rng(seed)
        self.fail_on, self.fail_generated = fail_on, fail_generated
        self.tasks: list[FakeTask] = []
        self.log: list[tuple[str, str, Any]] = []
        self.writes: list[tuple[str, np.ndarray]] = []
        self.counts: dict[str, int] = {}
        self.ao_now = np.zeros(2)
        self.amplitudes: list[np.ndarray] = []  # per acquisition: field amplitude of each rotation (Oe)
        self.resistances: list[np.ndarray] = []  # per acquisition: the device's response (ohm)

    def __call__(self, name: str = "") -> FakeTask:
        task = FakeTask(self, name)
        self.tasks.append(task)
        return task

    def synthesise(self, ai: FakeTask, n: int) -> np.ndarray:
        """AI samples ``(n,)`` for the AO task armed on ``ai``'s start trigger."""
        armed = [t for t in self.tasks if t.kind == "ao" and t.started and not t.closed
                 and t.written is not None and t.written.shape[1] > 1]
        if not armed:
            volts = np.zeros((n * int(self.ao_rate_hz) // int(self.ai_rate_hz) + 1, 2))
            delay = 0
        else:
            ao = armed[-1]
            volts = ao.written.T
            good = ao.trigger is not None and ao.trigger["source"] == f"/{self.device}/ai/StartTrigger"
            delay = 0 if good else int(round(self.misalign_s * self.ao_rate_hz))
        if delay:
            volts = np.concatenate([np.zeros((delay, volts.shape[1])), volts])
        amps = field_amplitudes(volts, rate_hz=self.ao_rate_hz, rotation_hz=self.rotation_hz,
                                oe_per_volt=self.oe_per_volt)
        r_rot = np.asarray(self.response(amps), dtype=np.float64).reshape(-1)
        self.amplitudes.append(amps)
        self.resistances.append(r_rot)
        ai_spr = int(round(self.ai_rate_hz / self.rotation_hz))
        r = np.repeat(r_rot, ai_spr)
        r = np.concatenate([r, np.full(max(0, n - r.shape[0]), r[-1] if r.size else 0.0)])[:n]
        t = np.arange(n) / self.ai_rate_hz
        if self.mod_ohm:
            r = r + self.mod_ohm * np.cos(2 * 2 * np.pi * self.rotation_hz * t + 0.3)
        v = lockin.carrier_signal(r, current_a=self.current_a, carrier_hz=self.carrier_hz,
                                  sample_rate_hz=self.ai_rate_hz, phase_rad=self.phase_rad)
        if self.noise_v:
            v = v + self.rng.normal(0.0, self.noise_v, n)
        return v
