"""The NI-DAQmx layer of the nanoring rig: tasks, clocks, triggers, safe ramps.

Everything that touches ``nidaqmx`` lives here, behind a *task factory*: a
callable ``factory(name: str) -> task`` returning an object with the
``nidaqmx.Task`` API used below (``ai_channels.add_ai_voltage_chan``,
``ao_channels.add_ao_voltage_chan``, ``timing.cfg_samp_clk_timing``,
``triggers.start_trigger.cfg_dig_edge_start_trig``, ``write``, ``start``,
``read``, ``wait_until_done``, ``out_stream.total_samp_per_chan_generated``,
``close``). The default factory is ``nidaqmx.Task``; tests inject
:class:`bridge.backends.daq.fake.FakeTaskFactory`.

One acquisition (:meth:`DaqIO.acquire`):

- AI task: ``DEV/ai0``, +-``ai_range_v``, finite, ``ai_rate_hz`` (2 MHz), n samples.
- AO task: ``DEV/ao0``, ``DEV/ao1``, +-``ao_range_v``, finite, ``ao_rate_hz``,
  started on ``/DEV/ai/StartTrigger`` (rising edge; ``start_trigger`` overrides
  the terminal, e.g. ``/cDAQ1/ai/StartTrigger`` on a CompactDAQ chassis): both tasks derive their
  sample clocks from the board's timebase and start on the same edge, so AO
  sample ``k`` and AI sample ``k * ai_rate / ao_rate`` are simultaneous.
- Order: write AO (no auto-start), arm AO, start AI (fires the trigger), read
  AI, wait for AO, close both.

:meth:`DaqIO.make_safe` brings both coil outputs to 0 V: a hardware-timed
linear ramp from the last value known to be on the outputs (no slew kick into
the coils), then an on-demand write of zeros.

Without NI-DAQmx, :func:`probe_driver` raises :class:`DaqNotInstalled` (a
``StationError``) with one line saying what to do.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ...errors import StationError

NOT_INSTALLED = ("NI-DAQmx is not installed on this machine: install it, or use "
                 "backend = 'physics.nra' to emulate the rig")

TaskFactory = Callable[[str], Any]


class DaqNotInstalled(StationError):
    """NI-DAQmx (the driver under the ``nidaqmx`` package) is missing on this machine."""


def probe_driver(device: str) -> str:
    """Return the NI-DAQmx driver version; raise :class:`DaqNotInstalled` / ``StationError``.

    Also checks that ``device`` exists.
    """
    try:
        import nidaqmx.errors
        import nidaqmx.system
    except ImportError as exc:  # the Python package itself is missing
        raise DaqNotInstalled(NOT_INSTALLED) from exc
    try:
        system = nidaqmx.system.System.local()
        version = system.driver_version
        names = list(system.devices.device_names)
    except nidaqmx.errors.DaqNotFoundError:
        raise DaqNotInstalled(NOT_INSTALLED) from None
    except (nidaqmx.errors.Error, OSError) as exc:
        raise StationError(f"NI-DAQmx could not be queried ({exc}); check the driver installation "
                           "with NI MAX, or use backend = 'physics.nra' to emulate the rig") from None
    if device not in names:
        raise StationError(f"NI-DAQmx has no device '{device}' (devices: {names or 'none'}); set "
                           "device = '...' in the station to one NI MAX lists")
    return f"{version.major_version}.{version.minor_version}.{version.update_version}"


def default_task_factory(name: str) -> Any:
    """``nidaqmx.Task(name)``."""
    import nidaqmx

    return nidaqmx.Task(name)


class DaqIO:
    """Configured channels and clocks; see the module docstring. Times in seconds, voltages in V."""

    def __init__(self, *, task_factory: TaskFactory, device: str, ao_channels: tuple[str, str],
                 ai_channel: str, ao_rate_hz: float, ai_rate_hz: float, ao_range_v: float,
                 ai_range_v: float, ai_terminal: str = "DIFF", timeout_margin_s: float = 5.0,
                 safe_ramp_s: float = 0.05, start_trigger: str | None = None):
        self.factory = task_factory
        self.device = device
        self.ao_channels = tuple(ao_channels)
        self.ai_channel = ai_channel
        self.ao_rate_hz, self.ai_rate_hz = float(ao_rate_hz), float(ai_rate_hz)
        self.ao_range_v, self.ai_range_v = float(ao_range_v), float(ai_range_v)
        self.ai_terminal = ai_terminal
        self.timeout_margin_s = float(timeout_margin_s)
        self.safe_ramp_s = float(safe_ramp_s)
        self.start_trigger = start_trigger
        self.last_volts = np.zeros(len(self.ao_channels))  # best knowledge of what the AO holds

    @property
    def trigger_source(self) -> str:
        return self.start_trigger or f"/{self.device}/ai/StartTrigger"

    def _add_ao(self, task: Any) -> None:
        for ch in self.ao_channels:
            task.ao_channels.add_ao_voltage_chan(f"{self.device}/{ch}", min_val=-self.ao_range_v,
                                                 max_val=self.ao_range_v)

    def acquire(self, volts: np.ndarray, n_ai: int) -> np.ndarray:
        """Generate ``volts`` ``(S, n_ao)`` while sampling ``n_ai`` AI samples; return ``(n_ai,)`` V."""
        from nidaqmx.constants import AcquisitionType, Edge, TerminalConfiguration

        volts = np.asarray(volts, dtype=np.float64)
        if volts.ndim != 2 or volts.shape[1] != len(self.ao_channels):
            raise ValueError(f"volts must be (S, {len(self.ao_channels)}), got {volts.shape}")
        if np.abs(volts).max(initial=0.0) > self.ao_range_v:
            raise ValueError(f"AO waveform peaks at {np.abs(volts).max():.4g} V, outside the channel "
                             f"range +-{self.ao_range_v:g} V")
        duration_s = max(volts.shape[0] / self.ao_rate_hz, n_ai / self.ai_rate_hz)
        timeout_s = duration_s + self.timeout_margin_s
        ai = ao = None
        started, t_start = False, time.monotonic()
        try:
            ai = self.factory("nado-nra-ai")
            ai.ai_channels.add_ai_voltage_chan(
                f"{self.device}/{self.ai_channel}", terminal_config=TerminalConfiguration[self.ai_terminal],
                min_val=-self.ai_range_v, max_val=self.ai_range_v)
            ai.timing.cfg_samp_clk_timing(self.ai_rate_hz, sample_mode=AcquisitionType.FINITE,
                                          samps_per_chan=int(n_ai))
            ao = self.factory("nado-nra-ao")
            self._add_ao(ao)
            ao.timing.cfg_samp_clk_timing(self.ao_rate_hz, sample_mode=AcquisitionType.FINITE,
                                          samps_per_chan=int(volts.shape[0]))
            ao.triggers.start_trigger.cfg_dig_edge_start_trig(self.trigger_source,
                                                              trigger_edge=Edge.RISING)
            ao.write(np.ascontiguousarray(volts.T), auto_start=False, timeout=timeout_s)
            started, t_start = True, time.monotonic()
            ao.start()
            ai.start()
            data = np.asarray(ai.read(number_of_samples_per_channel=int(n_ai), timeout=timeout_s),
                              dtype=np.float64).reshape(-1)
            ao.wait_until_done(timeout=timeout_s)
            self.last_volts = volts[-1].copy()  # the waveform's last sample (0 V by construction)
            started = False
            if data.shape[0] != n_ai:
                raise ValueError(f"the DAQ returned {data.shape[0]} AI samples, expected {n_ai}")
            return data
        finally:
            if started:  # failed mid-generation: find where the outputs stopped
                try:
                    k = int(ao.out_stream.total_samp_per_chan_generated)
                    self.last_volts = volts[k - 1].copy() if k > 0 else self.last_volts
                except Exception:  # unknown: estimate from the time generation has run
                    k = int((time.monotonic() - t_start) * self.ao_rate_hz)
                    self.last_volts = volts[min(max(k, 1), volts.shape[0]) - 1].copy()
            for task in (ao, ai):
                if task is not None:
                    try:
                        task.close()
                    except Exception:  # closing must not hide the error that brought us here
                        pass

    def make_safe(self, *, oe_per_volt: np.ndarray | None = None, max_slew_oe_per_s: float | None = None) -> None:
        """Ramp every AO channel from ``last_volts`` to 0 V, then write 0 V on demand."""
        from nidaqmx.constants import AcquisitionType

        start = np.asarray(self.last_volts, dtype=np.float64)
        if np.any(start != 0.0):
            ramp_s = self.safe_ramp_s
            if oe_per_volt is not None and max_slew_oe_per_s:
                need = float(np.max(np.abs(start) * np.abs(oe_per_volt))) / (0.5 * max_slew_oe_per_s)
                ramp_s = max(ramp_s, need)
            n = max(2, int(np.ceil(ramp_s * self.ao_rate_hz)))
            ramp = start[:, None] * np.linspace(1.0, 0.0, n)[None, :]
            task = self.factory("nado-nra-ramp")
            try:
                self._add_ao(task)
                task.timing.cfg_samp_clk_timing(self.ao_rate_hz, sample_mode=AcquisitionType.FINITE,
                                                samps_per_chan=n)
                task.write(np.ascontiguousarray(ramp), auto_start=True,
                           timeout=n / self.ao_rate_hz + self.timeout_margin_s)
                task.wait_until_done(timeout=n / self.ao_rate_hz + self.timeout_margin_s)
            finally:
                task.close()
        task = self.factory("nado-nra-zero")
        try:
            self._add_ao(task)
            task.write([0.0] * len(self.ao_channels), auto_start=True, timeout=self.timeout_margin_s)
        finally:
            task.close()
        self.last_volts = np.zeros_like(start)
