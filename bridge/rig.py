"""The Rig interface: anything that can be driven.

A rig has ``describe() -> dict`` and
``drive(inputs, *, reset=True, seed=None) -> DriveResult``.

- ``inputs``: float array ``(B, T, n_in)``; B independent experiments of T steps.
- ``reset=True``: each experiment starts with the rig's reset protocol.
  ``reset=False`` continues from the state the previous drive left (a real rig
  has one state, so then B must be 1; emulators may allow more).
- ``seed``: the same inputs and seed give the same outputs; ``None`` draws fresh noise.

``describe()`` follows bluesky's event-model ``DataKey`` conventions::

    {name, kind, backend, source, emulated,
     input: {dims, units, min, max}, output: {dims, units}, step_s}

``input.dims``/``output.dims`` are ``[n_in]``/``[n_out]``; ``step_s`` is the
duration of one input step in seconds; ``source`` carries a backend prefix
(``sim+physics://nra``, ``daq://Dev1/ai0``).

Backends are classes constructed as ``Backend(name=NAME, **params)`` from a
station table (see :mod:`bridge.station`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import BadInput, OutOfRange


@dataclass(frozen=True)
class DriveResult:
    """What one drive measured.

    outputs: ``(B, T, n_out)`` float64, the observable after each input step.
    initial: ``(B, n_out)`` float64, the observable after the reset (or, with
        ``reset=False``, the observable the drive started from).
    instrument_s: instrument time the work took, seconds (real or emulated).
    """

    outputs: np.ndarray
    initial: np.ndarray
    instrument_s: float


@runtime_checkable
class Rig(Protocol):
    """A drivable device. See the module docstring for the contract."""

    def describe(self) -> dict[str, Any]: ...

    def drive(self, inputs: np.ndarray, *, reset: bool = True,
              seed: int | None = None) -> DriveResult: ...


def check_inputs(inputs: Any, description: dict[str, Any]) -> np.ndarray:
    """Validate ``inputs`` against a rig's description; return float64 ``(B, T, n_in)``.

    Raises :class:`BadInput` for the wrong rank, width, dtype, empty arrays, NaN
    or inf, and :class:`OutOfRange` for values outside ``input.min..input.max``.
    Servers call this before a request reaches a rig: bad input never touches
    the device.
    """
    arr = np.asarray(inputs)
    if arr.dtype.kind not in "fiu":
        raise BadInput(f"inputs must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise BadInput(f"inputs must have shape (B, T, n_in), got {arr.shape}")
    n_in = int(description["input"]["dims"][0])
    if arr.shape[2] != n_in:
        raise BadInput(f"inputs have n_in={arr.shape[2]}, rig '{description.get('name')}' takes {n_in}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadInput(f"inputs must hold at least one experiment and one step, got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise BadInput("inputs contain NaN or inf")
    lo, hi = float(description["input"]["min"]), float(description["input"]["max"])
    amin, amax = float(arr.min()), float(arr.max())
    if amin < lo or amax > hi:
        units = description["input"].get("units", "")
        raise OutOfRange(
            f"inputs span {amin:g}..{amax:g} {units}, outside the rig's safe range "
            f"{lo:g}..{hi:g} {units}; rescale them (see describe()['input'])")
    return arr
