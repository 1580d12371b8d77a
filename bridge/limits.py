"""Safety interlocks shared by every backend (real and emulated).

A station table may carry a ``limits`` table; :mod:`bridge.station` calls
``guard(rig, limits)`` on every rig it builds::

    [rigs.nra]
    backend = "nidaqmx.nra"
    limits = { max_field_oe = 80.0, max_coil_v = 8.0, max_slew_oe_per_s = 150000.0 }

Keys (all optional for emulated rigs; **all three required** for a real one,
``describe()["emulated"] is False``, which otherwise refuses to start):

- ``max_field_oe``: the largest input magnitude, in the rig's input units (Oe
  for the magnet rigs). The guarded rig's ``describe()["input"]`` reports the
  tighter of the backend's range and ``-max_field_oe..max_field_oe``, so the
  server refuses anything outside (``OUT_OF_RANGE``) before the rig is called.
- ``max_coil_v``: the largest voltage any coil-supply control output may be
  commanded to, in volts. Where the backend exposes a coil calibration
  (``describe()["calibration"]["oe_per_volt"]``, one value per axis) the input
  range is tightened to ``max_coil_v * min(oe_per_volt)`` as well.
- ``max_slew_oe_per_s``: the fastest change of field a coil may be asked for,
  in Oe/s. Where the backend exposes its planned coil waveforms
  (``coil_plan(inputs, reset=...) -> CoilPlan``), voltage and slew are checked
  sample by sample on each axis, exactly as the supplies would see them;
  otherwise slew is checked on the input sequence, as the step-to-step change
  divided by ``step_s``.

The guarded rig (:class:`GuardedRig`):

- checks every drive itself too (``check_inputs`` + voltage/slew), raising
  ``OutOfRange`` before the backend is called;
- calls the backend's ``make_safe()`` (ramp outputs to zero) after each drive,
  on any error and on ``close()``; a failing drive surfaces as ``RIG_FAULT``
  unless it already is a ``RigError``. ``make_safe()`` is public so a watchdog
  (lease expiry, SIGTERM) can call it;
- calls ``apply_limits(limits)`` on the backend at build if it has one (the DAQ
  rig narrows its AO channel range to ``+-max_coil_v`` so the driver itself
  refuses larger writes);
- delegates every other attribute to the backend.

:func:`describe_rig_line` is one rig's line of ``nado rig check``
(:func:`bridge.station.check_station`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .errors import OutOfRange, RigError, StationError
from .rig import DriveResult, check_inputs

_REQUIRED_FOR_REAL = ("max_field_oe", "max_coil_v", "max_slew_oe_per_s")


@dataclass(frozen=True)
class Limits:
    """A rig's safe operating limits (see the module docstring). ``None`` = not set."""

    max_field_oe: float | None = None
    max_coil_v: float | None = None
    max_slew_oe_per_s: float | None = None

    @classmethod
    def from_table(cls, table: dict[str, Any] | "Limits" | None, *, rig: str = "?") -> "Limits":
        """Parse a station ``limits`` table; raise :class:`StationError` naming a bad key or value."""
        if table is None:
            return cls()
        if isinstance(table, Limits):
            return table
        if not isinstance(table, dict):
            raise StationError(f"rig '{rig}': limits must be a table like "
                               f"{{ max_field_oe = 80.0 }}, got {type(table).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise StationError(f"rig '{rig}': unknown limit(s) {unknown}; known limits are {known}")
        values = {}
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise StationError(f"rig '{rig}': limits.{key} must be a positive number, got {value!r}")
            values[key] = float(value)
        return cls(**values)

    def is_empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def missing_for_real(self) -> list[str]:
        return [k for k in _REQUIRED_FOR_REAL if getattr(self, k) is None]

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class CoilPlan:
    """The coil-supply waveforms a drive would write.

    volts: ``(S, C)`` float64, S samples on C analog outputs, in volts.
    rate_hz: the output sample rate. oe_per_volt: ``(C,)`` field per volt per axis.
    """

    volts: np.ndarray
    rate_hz: float
    oe_per_volt: np.ndarray


def check_plan(plan: CoilPlan, limits: Limits) -> None:
    """Raise :class:`OutOfRange` if ``plan`` exceeds ``max_coil_v`` or ``max_slew_oe_per_s``."""
    volts = np.asarray(plan.volts, dtype=np.float64)
    if limits.max_coil_v is not None and volts.size:
        peak = float(np.abs(volts).max())
        if peak > limits.max_coil_v * (1 + 1e-12):
            raise OutOfRange(f"this drive would command {peak:.4g} V on a coil supply, above the "
                             f"station limit max_coil_v = {limits.max_coil_v:g} V; use smaller inputs")
    if limits.max_slew_oe_per_s is not None and volts.shape[0] > 1:
        slew = np.abs(np.diff(volts, axis=0)) * float(plan.rate_hz) * np.abs(np.asarray(plan.oe_per_volt))
        peak = float(slew.max())
        if peak > limits.max_slew_oe_per_s * (1 + 1e-12):
            raise OutOfRange(f"this drive would slew a coil at {peak:.4g} Oe/s, above the station "
                             f"limit max_slew_oe_per_s = {limits.max_slew_oe_per_s:g} Oe/s; use smaller "
                             f"inputs or smaller steps between them")


def check_step_slew(inputs: np.ndarray, step_s: float, limits: Limits) -> None:
    """Slew on the input sequence ``(B, T, n_in)``: ``|s[t] - s[t-1]| / step_s`` (backends without a plan)."""
    if limits.max_slew_oe_per_s is None or inputs.shape[1] < 2 or not step_s > 0:
        return
    peak = float(np.abs(np.diff(inputs, axis=1)).max()) / step_s
    if peak > limits.max_slew_oe_per_s * (1 + 1e-12):
        raise OutOfRange(f"consecutive inputs change at {peak:.4g} units/s, above the station limit "
                         f"max_slew_oe_per_s = {limits.max_slew_oe_per_s:g}; use smaller steps between inputs")


def tighten(description: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """A copy of ``description`` with the input range narrowed by ``limits`` and ``limits`` recorded."""
    desc = copy.deepcopy(description)
    lo, hi = float(desc["input"]["min"]), float(desc["input"]["max"])
    bound = math.inf
    if limits.max_field_oe is not None:
        bound = limits.max_field_oe
    oe_per_volt = (desc.get("calibration") or {}).get("oe_per_volt")
    if limits.max_coil_v is not None and oe_per_volt:
        bound = min(bound, limits.max_coil_v * float(np.min(np.abs(oe_per_volt))))
    lo, hi = max(lo, -bound), min(hi, bound)
    if not lo <= hi:
        raise StationError(f"rig '{desc.get('name')}': the limits {limits.to_dict()} leave no input "
                           f"range (backend range {desc['input']['min']}..{desc['input']['max']}); "
                           f"check the limits table")
    desc["input"]["min"], desc["input"]["max"] = lo, hi
    desc["limits"] = limits.to_dict()
    return desc


class GuardedRig:
    """A rig wrapped with station limits; see the module docstring."""

    def __init__(self, rig: Any, limits: Limits):
        self.rig = rig
        self.limits = limits
        backend_desc = rig.describe()
        name = backend_desc.get("name", "?")
        if hasattr(rig, "apply_limits"):
            rig.apply_limits(limits)
            backend_desc = rig.describe()
        self._desc = tighten(backend_desc, limits)
        if hasattr(rig, "coil_plan"):
            # The reset protocol and the largest allowed input must fit the limits.
            probe = np.full((1, 1, int(self._desc["input"]["dims"][0])), self._desc["input"]["max"])
            try:
                check_plan(rig.coil_plan(probe, reset=True), limits)
            except OutOfRange as exc:
                raise StationError(f"rig '{name}': its reset protocol or its largest input "
                                   f"({self._desc['input']['max']:g}) breaks the station limits: "
                                   f"{exc.message}") from None

    def describe(self) -> dict[str, Any]:
        return copy.deepcopy(self._desc)

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        x = check_inputs(inputs, self._desc)
        if hasattr(self.rig, "coil_plan"):
            for b in range(x.shape[0]):  # one experiment at a time: bounded memory for large B
                check_plan(self.rig.coil_plan(x[b:b + 1], reset=reset), self.limits)
        else:
            check_step_slew(x, float(self._desc.get("step_s") or 0.0), self.limits)
        try:
            result = self.rig.drive(x, reset=reset, seed=seed)
        except BaseException as exc:
            try:
                self.make_safe()
            except Exception as safe_exc:  # report both: the drive failed and so did the ramp-down
                raise RigError("RIG_FAULT", f"drive failed ({exc}) and making the rig safe failed too "
                               f"({safe_exc}); check the hardware now") from exc
            if isinstance(exc, RigError) or not isinstance(exc, Exception):
                raise
            raise RigError("RIG_FAULT", f"the rig failed during the drive ({type(exc).__name__}: "
                           f"{exc}); its outputs were made safe; check the rig and retry") from exc
        self.make_safe()
        return result

    def make_safe(self) -> None:
        """Ramp the backend's outputs to zero (its ``make_safe()``, if it has one)."""
        fn = getattr(self.rig, "make_safe", None)
        if fn is None:
            return
        try:
            fn()
        except RigError:
            raise
        except Exception as exc:
            raise RigError("RIG_FAULT", f"making rig '{self._desc.get('name')}' safe failed "
                           f"({type(exc).__name__}: {exc}); check the hardware now") from exc

    def close(self) -> None:
        """Make safe, then close the backend."""
        try:
            self.make_safe()
        finally:
            fn = getattr(self.rig, "close", None)
            if fn is not None:
                fn()

    def __getattr__(self, attr: str) -> Any:
        if attr == "rig":  # not yet set (during construction or unpickling)
            raise AttributeError(attr)
        return getattr(self.rig, attr)


def guard(rig: Any, limits: dict[str, Any] | Limits | None) -> Any:
    """Return ``rig`` wrapped with the station's ``limits``.

    An emulated rig without limits is returned unchanged. A real rig
    (``describe()["emulated"] is False``) without ``max_field_oe``,
    ``max_coil_v`` and ``max_slew_oe_per_s`` raises :class:`StationError`.
    """
    desc = rig.describe()
    name = desc.get("name", "?")
    parsed = Limits.from_table(limits, rig=name)
    if desc.get("emulated") is False:
        missing = parsed.missing_for_real()
        if missing:
            raise StationError(
                f"rig '{name}' drives real hardware ({desc.get('backend')}) but its station table states "
                f"no {', '.join(missing)}; add them, e.g. [rigs.{name}] limits = {{ max_field_oe = 80.0, "
                f"max_coil_v = 8.0, max_slew_oe_per_s = 150000.0 }}")
    if parsed.is_empty():
        return rig
    return GuardedRig(rig, parsed)


def describe_rig_line(name: str, desc: dict[str, Any]) -> str:
    inp = desc.get("input", {})
    units = inp.get("units", "")
    lim = desc.get("limits")
    lim_s = ", ".join(f"{k}={v:g}" for k, v in lim.items()) if lim else "none"
    kind = "emulated" if desc.get("emulated", True) else "REAL"
    return (f"  {name}: backend={desc.get('backend')} ({kind}, {desc.get('source', '')})\n"
            f"    input {inp.get('min'):g}..{inp.get('max'):g} {units} x{inp.get('dims')}, "
            f"output x{desc.get('output', {}).get('dims')} {desc.get('output', {}).get('units', '')}, "
            f"step {desc.get('step_s')} s\n"
            f"    limits: {lim_s}")
