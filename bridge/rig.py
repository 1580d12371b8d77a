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

import math
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


_F8 = np.dtype("<f8")
_SMALL = 64   # up to this many elements the range check runs on a Python list (cheaper than numpy)
_umin, _umax = np.minimum.reduce, np.maximum.reduce
SEED_END = 2**64   # seeds are ints in 0 .. 2**64 - 1


def _in_range(x: np.ndarray, lo: float, hi: float) -> bool:
    """Whether every element of the float64 array ``x`` is finite and in ``lo..hi``.

    False means "not sure" (e.g. a sum that overflows): :func:`check_inputs` then runs the
    precise check, which names the problem.
    """
    if x.size <= _SMALL:
        v = x.ravel().tolist()
        s = sum(v)
        return s - s == 0 and lo <= min(v) and max(v) <= hi   # NaN/inf make s - s NaN
    return bool(lo <= _umin(x, None) and _umax(x, None) <= hi)   # NaN fails both comparisons


def check_inputs(inputs: Any, description: dict[str, Any]) -> np.ndarray:
    """Validate ``inputs`` against a rig's description; return float64 ``(B, T, n_in)``.

    The one range check of bridge: servers, guarded rigs and backends all call it.
    Raises :class:`BadInput` for the wrong rank, width, dtype, empty arrays, NaN
    or inf, and :class:`OutOfRange` for values outside ``input.min..input.max``.
    Servers call this before a request reaches a rig: bad input never touches
    the device. Valid float64 inputs within a finite range pass after one min and
    one max reduction (no copy).
    """
    inp = description["input"]
    lo, hi = float(inp["min"]), float(inp["max"])
    n_in = int(inp["dims"][0])
    if (type(inputs) is np.ndarray and inputs.dtype is _F8 and inputs.ndim == 3 and inputs.shape[2] == n_in
            and inputs.shape[0] and inputs.shape[1] and -math.inf < lo and hi < math.inf
            and _in_range(inputs, lo, hi)):
        return inputs
    arr = np.asarray(inputs)
    if arr.dtype.kind not in "fiu":
        raise BadInput(f"inputs must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise BadInput(f"inputs must have shape (B, T, n_in), got {arr.shape}")
    if arr.shape[2] != n_in:
        raise BadInput(f"inputs have n_in={arr.shape[2]}, rig '{description.get('name')}' takes {n_in}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadInput(f"inputs must hold at least one experiment and one step, got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise BadInput("inputs contain NaN or inf")
    amin, amax = float(arr.min()), float(arr.max())
    if amin < lo or amax > hi:
        units = inp.get("units", "")
        raise OutOfRange(
            f"inputs span {amin:g}..{amax:g} {units}, outside the rig's safe range "
            f"{lo:g}..{hi:g} {units}; rescale them (see describe()['input'])")
    return arr


def check_seed(seed: Any) -> int | None:
    """A drive's ``seed``: None or an int in ``0..2**64-1`` (numpy ints too); else :class:`BadInput`.

    The one seed check of bridge (the server answers its error as ``BAD_REQUEST``).
    """
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < SEED_END:
        raise BadInput(f"seed must be None or an int in 0..2**64-1, got {seed!r:.80}")
    return int(seed)
