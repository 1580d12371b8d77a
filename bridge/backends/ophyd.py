"""Any ophyd-async device as a rig (backend ``ophyd``; needs ``pip install 'nado[bluesky]'``).

A station entry::

    [rigs.magnet]
    backend = "ophyd"
    device = "mylab.devices:make_stage"   # a factory (sync or async) returning an ophyd-async Device
    device_args = { prefix = "LAB:" }     # optional keyword arguments of the factory
    input = "field"                       # the signal set once per input step
    outputs = ["sensor.value"]            # readables recorded after each step
    settle_s = 0.05                       # wait after each set, before reading (seconds)
    reset = "mylab.devices:reset_stage"   # optional: async callable(device) run before each sequence
    limits = { max_field_oe = 50.0, max_coil_v = 5.0, max_slew_oe_per_s = 1000.0 }

Optional keys: ``input_range = [lo, hi]`` (needed when the input signal states no
control limits; otherwise it narrows them), ``safe_value`` (the input's safe value,
default the value of the range nearest 0), ``reset_s`` (without ``reset``: seconds to
hold the safe value as the reset, default 0), ``mock = true`` (connect with
ophyd-async's mock signals), ``emulated = true`` (declare the device a simulation;
by default it is real hardware, so the station must state all three limits),
``timeout_s`` (per set/read, default 10).

How it behaves:

- ``describe()`` comes from the device's own metadata: the input's DataKey gives
  ``n_in`` (its shape), units and control limits (the range); the outputs' DataKeys
  give ``n_out`` (the sum of their sizes, in the order listed) and units; each
  channel is listed under ``channels``. ``step_s`` is ``settle_s``.
- ``drive(inputs (B, T, n_in), reset, seed)``: experiment by experiment, the reset
  (the ``reset`` callable, or the safe value held ``reset_s``), the outputs read as
  ``initial``, then per step: set the input, wait ``settle_s``, read the outputs.
  ``reset=False`` continues the device's one state, so it needs B = 1. A real device's
  noise cannot be seeded: ``seed`` is accepted and ignored. ``instrument_s`` is the
  wall time the drive took on the device.
- ``make_safe()`` sets the input to its safe value (and stops a running drive at its
  next step); the station wraps the rig with :func:`bridge.limits.guard`, which calls
  it after every drive, on errors and at close.
- The device lives on its own asyncio event loop in a thread the rig owns
  (``ophyd-async``'s tasks and callbacks run there); the server's worker thread waits
  for each drive, so the server never blocks.
"""
from __future__ import annotations

import asyncio
import copy
import inspect
import math
import threading
import time
from typing import Any

import numpy as np

from ..errors import BadInput, RigError, StationError
from ..rig import DriveResult, check_inputs
from ..values import import_object

_NUMERIC = ("number", "integer", "boolean", "array")


def _import(spec: str, what: str, rig: str) -> Any:
    """``package.module:attr`` -> the callable it names."""
    obj = import_object(f"rigs.{rig}.{what}", spec, form="package.module:function")
    if not callable(obj):
        raise StationError(f"rigs.{rig}.{what} = {spec!r} is not callable")
    return obj


def _child(device: Any, path: str, what: str, rig: str) -> Any:
    obj = device
    for part in path.split("."):
        nxt = getattr(obj, part, None)
        if nxt is None:
            raise StationError(f"rigs.{rig}.{what} = {path!r}: the device has no {part!r} "
                               f"(under {getattr(obj, 'name', '') or type(obj).__name__})")
        obj = nxt
    return obj


def _size(key: dict, where: str, rig: str) -> int:
    if key.get("dtype") not in _NUMERIC:
        raise StationError(f"rigs.{rig}: {where} has dtype {key.get('dtype')!r}; a rig needs numbers "
                           f"({', '.join(_NUMERIC)})")
    shape = key.get("shape") or []
    if any(not isinstance(s, int) or s < 1 for s in shape):
        raise StationError(f"rigs.{rig}: {where} has shape {shape}; a rig needs a fixed shape")
    return int(np.prod(shape)) if shape else 1


class OphydRig:
    """An ophyd-async device served as a rig; see the module docstring."""

    kind = "ophyd"
    bridge_inline = False   # every request runs on the server's worker thread, never its loop

    def __init__(self, name: str, *, device: str, input: str, outputs: list[str],
                 settle_s: float = 0.0, reset: str | None = None, reset_s: float = 0.0,
                 input_range: list[float] | None = None, safe_value: float | None = None,
                 device_args: dict[str, Any] | None = None, mock: bool = False,
                 emulated: bool = False, timeout_s: float = 10.0) -> None:
        try:
            import ophyd_async.core  # noqa: F401  (the backend's one dependency)
        except ImportError:
            raise StationError(f"rigs.{name}: backend 'ophyd' needs ophyd-async; "
                               "pip install 'nado[bluesky]'") from None
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
            raise StationError(f"rigs.{name}.outputs must be a non-empty list of signal paths, "
                               f"e.g. [\"sensor.value\"]; got {outputs!r}")
        for key, v in (("settle_s", settle_s), ("reset_s", reset_s), ("timeout_s", timeout_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise StationError(f"rigs.{name}.{key} must be seconds >= 0, got {v!r}")
        self.name = name
        self.settle_s, self.reset_s, self.timeout_s = float(settle_s), float(reset_s), float(timeout_s)
        self.emulated = bool(emulated)
        factory = _import(device, "device", name)
        reset_fn = _import(reset, "reset", name) if reset is not None else None
        self._lock = threading.Lock()      # one drive at a time
        self._abort = threading.Event()    # make_safe() during a drive stops it at the next step
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"ophyd-{name}", daemon=True)
        self._thread.start()
        try:
            self._setup(factory, dict(device_args or {}), input, outputs, reset_fn, bool(mock),
                        input_range, safe_value)
        except BaseException:
            self._stop_loop()
            raise

    # ------------------------------------------------------------------ set-up
    def _run(self, coro: Any, timeout_s: float | None = None) -> Any:
        """Run ``coro`` on the rig's loop and wait for it (from any other thread)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout_s)
        except TimeoutError:
            fut.cancel()
            raise

    def _setup(self, factory, device_args, input_path, output_paths, reset_fn, mock, input_range,
               safe_value) -> None:
        name = self.name

        async def build():
            dev = factory(**device_args)
            if inspect.isawaitable(dev):
                dev = await dev
            if not getattr(dev, "name", ""):
                dev.set_name(name)
            await dev.connect(mock=mock, timeout=self.timeout_s)
            inp = _child(dev, input_path, "input", name)
            outs = [_child(dev, p, "outputs", name) for p in output_paths]
            if not callable(getattr(inp, "set", None)) or not callable(getattr(inp, "describe", None)):
                raise StationError(f"rigs.{name}.input = {input_path!r} is not a settable, readable "
                                   "signal (it needs set() and describe())")
            in_keys = await inp.describe()
            out_keys = []
            for p, o in zip(output_paths, outs):
                if not callable(getattr(o, "read", None)):
                    raise StationError(f"rigs.{name}.outputs: {p!r} is not readable")
                out_keys.append(await o.describe())
            return dev, inp, outs, in_keys, out_keys

        try:
            dev, inp, outs, in_keys, out_keys = self._run(build(), self.timeout_s + 30.0)
        except StationError:
            raise
        except Exception as exc:
            raise StationError(f"rigs.{name}: building or connecting the ophyd-async device failed: "
                               f"{type(exc).__name__}: {exc}") from None
        self.device, self._input, self._outputs, self._reset_fn = dev, inp, outs, reset_fn
        if len(in_keys) != 1:
            raise StationError(f"rigs.{name}.input = {input_path!r} reads as {len(in_keys)} values "
                               f"({sorted(in_keys)}); name one signal")
        self._in_key, in_dk = next(iter(in_keys.items()))
        self.n_in = _size(in_dk, f"input {self._in_key!r}", name)
        self._in_scalar = not (in_dk.get("shape") or [])
        lo, hi = -math.inf, math.inf
        control = (in_dk.get("limits") or {}).get("control") or {}
        c_lo, c_hi = control.get("low"), control.get("high")
        if c_lo is not None and c_hi is not None and c_lo < c_hi:   # EPICS says 0..0 for "unset"
            lo, hi = float(c_lo), float(c_hi)
        if input_range is not None:
            try:
                r_lo, r_hi = (float(v) for v in input_range)
            except (TypeError, ValueError):
                raise StationError(f"rigs.{name}.input_range must be [lo, hi], got {input_range!r}") from None
            lo, hi = max(lo, r_lo), min(hi, r_hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise StationError(f"rigs.{name}: the input {self._in_key!r} states no usable control limits "
                               f"(got {lo:g}..{hi:g}); add input_range = [lo, hi] to the station table")
        self.lo, self.hi = lo, hi
        self.safe_value = float(min(max(0.0, lo), hi) if safe_value is None else safe_value)
        if not lo <= self.safe_value <= hi:
            raise StationError(f"rigs.{name}.safe_value = {safe_value!r} lies outside the input range "
                               f"{lo:g}..{hi:g}")
        self._out_keys: list[tuple[str, int]] = []
        channels = []
        for p, keys in zip(output_paths, out_keys):
            for k, dk in keys.items():
                n = _size(dk, f"output {k!r}", name)
                self._out_keys.append((k, n))
                channels += [{"name": k if n == 1 else f"{k}[{i}]", "units": dk.get("units") or "",
                              "source": dk.get("source", "")} for i in range(n)]
        self.n_out = len(channels)
        units = sorted({c["units"] for c in channels})
        self._desc = {
            "name": name, "kind": self.kind, "backend": "ophyd",
            "source": f"ophyd://{in_dk.get('source', self._in_key)}", "emulated": self.emulated,
            "input": {"dims": [self.n_in], "units": in_dk.get("units") or "", "min": lo, "max": hi},
            "output": {"dims": [self.n_out], "units": units[0] if len(units) == 1 else ",".join(units)},
            "step_s": self.settle_s, "channels": channels, "safe_value": self.safe_value,
            "mock": mock}

    # ------------------------------------------------------------------ the rig
    def describe(self) -> dict[str, Any]:
        return copy.deepcopy(self._desc)

    async def _set(self, value: np.ndarray) -> None:
        v: Any = float(value[0]) if self._in_scalar else np.asarray(value, dtype=np.float64)
        status = self._input.set(v)
        if inspect.isawaitable(status):
            await asyncio.wait_for(status, self.timeout_s)

    async def _read(self) -> np.ndarray:
        out = np.empty(self.n_out)
        i = 0
        readings = await asyncio.wait_for(asyncio.gather(*(o.read() for o in self._outputs)), self.timeout_s)
        merged = {k: r for rd in readings for k, r in rd.items()}
        for k, n in self._out_keys:
            out[i:i + n] = np.asarray(merged[k]["value"], dtype=np.float64).ravel()
            i += n
        return out

    async def _reset(self) -> None:
        if self._reset_fn is not None:
            res = self._reset_fn(self.device)
            if inspect.isawaitable(res):
                await asyncio.wait_for(res, self.timeout_s + self.reset_s)
        else:
            await self._set(np.full(self.n_in, self.safe_value))
            if self.reset_s:
                await asyncio.sleep(self.reset_s)

    async def _drive(self, x: np.ndarray, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        B, T, _ = x.shape
        outputs, initial = np.empty((B, T, self.n_out)), np.empty((B, self.n_out))
        for b in range(B):
            if reset:
                await self._reset()
            initial[b] = await self._read()
            for t in range(T):
                if self._abort.is_set():
                    raise RigError("RIG_FAULT", f"rig '{self.name}' was made safe during the drive; "
                                   "drive again when it is ready")
                await self._set(x[b, t])
                if self.settle_s:
                    await asyncio.sleep(self.settle_s)
                outputs[b, t] = await self._read()
        return outputs, initial

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        x = check_inputs(inputs, self._desc)
        if not reset and x.shape[0] != 1:
            raise BadInput(f"rig '{self.name}' has one state: reset=False continues it, so B must be 1 "
                           f"(got B={x.shape[0]}); drive one experiment, or reset=True")
        B, T = x.shape[:2]
        budget = B * (T * (self.settle_s + 2 * self.timeout_s) + self.reset_s + 2 * self.timeout_s)
        with self._lock:
            self._abort.clear()
            t0 = time.perf_counter()
            outputs, initial = self._run(self._drive(x, bool(reset)), budget)
            spent = time.perf_counter() - t0
        return DriveResult(outputs=outputs, initial=initial, instrument_s=spent)

    def make_safe(self) -> None:
        """Set the input to its safe value (a running drive stops at its next step)."""
        if not self._loop.is_running():
            return
        self._abort.set()
        self._run(self._set(np.full(self.n_in, self.safe_value)), self.timeout_s + 5.0)

    def _stop_loop(self) -> None:
        if not self._loop.is_running():
            return

        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self._run(cancel_all(), 10.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
            if not self._thread.is_alive():
                self._loop.close()

    def close(self) -> None:
        """Make safe, then stop the device's event loop (its tasks are cancelled)."""
        try:
            self.make_safe()
        finally:
            self._stop_loop()
