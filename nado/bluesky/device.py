"""``RigDevice``: a bus rig as an ophyd-async device, for bluesky plans.

    from bluesky import RunEngine
    import bluesky.plans as bp
    from ophyd_async.core import init_devices
    from nado.bluesky import RigDevice

    RE = RunEngine()
    with init_devices():
        nra = RigDevice("tcp://127.0.0.1:5555", "nra")
    RE(bp.scan([nra], nra.input, 15, 35, 21))

Parts (signal names are ``{device name}-{part}``):

- ``input`` (settable): ``set(u)`` drives **one step** of ``u`` (a number, or ``n_in``
  numbers). The first step after ``stage()`` (every run stages its devices) starts
  with the rig's reset; later steps continue its state (``reset=False``). Its
  reading is the last input.
- ``output``: the observable after the last step (hinted: a scan's plotted column);
  ``instrument_s``: the instrument time of every drive so far, seconds. These two are
  what ``read()`` of the device gives; ``input`` is read on its own, as a scan's motor.
- ``sequence`` (settable, readable on its own): ``set(Drive(inputs (B, T, n_in),
  reset=True, seed=None))`` (or just an array ``(T, n_in)`` / ``(B, T, n_in)``) drives a
  whole batch of sequences; its reading holds ``inputs``, ``outputs (B, T, n_out)``,
  ``initial (B, n_out)``, ``reset``, ``seed`` (-1: none) and ``instrument_s`` of that
  drive. :func:`nado.bluesky.collect_plan` uses it.

``describe()`` states each value as an event-model DataKey with the rig's units and
limits (the bus's ``data_keys``, :mod:`bridge.datakeys`) and ``source``
``nado://ENDPOINT/RIG`` (this client's endpoint). Drives go through
:class:`bridge.RigClient` on a worker thread, so the RunEngine's event loop never
waits on the bus.
"""
from __future__ import annotations

import asyncio
import copy
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from event_model import DataKey
from ophyd_async.core import (Array1D, AsyncStatus, SignalR, SignalRW, SoftSignalBackend,
                              StandardReadable, StandardReadableFormat)

from bridge import RigClient
from bridge.datakeys import data_keys, source_of

from ..errors import ConfigError


@dataclass(frozen=True)
class Drive:
    """One drive of :attr:`RigDevice.sequence`: ``inputs`` ``(B, T, n_in)`` (or ``(T, n_in)``),
    ``reset`` (start each sequence with the rig's reset), ``seed`` (None: fresh noise)."""

    inputs: Any
    reset: bool = True
    seed: int | None = None


class _BusBackend(SoftSignalBackend):
    """A soft signal whose DataKey is the rig's: source ``nado://...``, units, limits, shape."""

    def __init__(self, datatype: Any, initial: Any, source: str, key: dict[str, Any] | None = None,
                 shape: list | None = None, setter: Any = None) -> None:
        super().__init__(datatype, initial, (key or {}).get("units"), setter=setter)
        self._source, self._key, self._shape = source, key or {}, shape
        if "limits" in self._key:
            self.metadata["limits"] = copy.deepcopy(self._key["limits"])

    def source(self, name: str, read: bool) -> str:
        return self._source

    async def get_datakey(self, source: str) -> DataKey:
        dk = await super().get_datakey(source)
        if self._shape is not None:
            dk["shape"] = list(self._shape)
        dk["object_name"] = self._key.get("object_name", dk.get("object_name", ""))
        return dk


class RigSequence(StandardReadable):
    """Whole drives of a rig (``RigDevice.sequence``); see :mod:`nado.bluesky.device`."""

    def __init__(self, owner: "RigDevice", name: str = "") -> None:
        self._drive = owner.drive   # a bound method: the owner is the parent, not a child
        src, n_in, n_out = owner.source, owner.n_in, owner.n_out
        self._values = {   # the backends whose values a drive sets
            "inputs": _BusBackend(np.ndarray, None, src, owner.keys["input"], [None, None, n_in]),
            "outputs": _BusBackend(np.ndarray, None, src, owner.keys["output"], [None, None, n_out]),
            "initial": _BusBackend(np.ndarray, None, src, owner.keys["output"], [None, n_out]),
            "reset_flag": _BusBackend(bool, True, src), "seed": _BusBackend(int, -1, src),
            "drive_s": _BusBackend(float, 0.0, src, {"units": "s"})}
        with self.add_children_as_readables():
            self.inputs = SignalR(self._values["inputs"])
            self.outputs = SignalR(self._values["outputs"])
            self.initial = SignalR(self._values["initial"])
            self.reset_flag = SignalR(self._values["reset_flag"])
            self.seed = SignalR(self._values["seed"])
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):   # what a table shows
            self.drive_s = SignalR(self._values["drive_s"])
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def set(self, value: Drive | Any) -> None:
        d = value if isinstance(value, Drive) else Drive(value)
        x = np.asarray(d.inputs, dtype=np.float64)
        if x.ndim == 2:
            x = x[None]
        res = await self._drive(x, reset=bool(d.reset), seed=d.seed)
        for key, v in (("inputs", x), ("outputs", res.outputs), ("initial", res.initial),
                       ("reset_flag", bool(d.reset)), ("seed", -1 if d.seed is None else int(d.seed)),
                       ("drive_s", float(res.instrument_s))):
            self._values[key].set_value(v)


class RigDevice(StandardReadable):
    """A rig on the bus as an ophyd-async device; see :mod:`nado.bluesky.device`.

    ``endpoint``, ``rig``: where the rig is served; ``name``: the device name (default
    the rig's); ``timeout_s``: per bus request; ``seed``: seeds the steps of ``input``
    (step k of a run gets ``seed + k``; None draws fresh noise); ``client``: an
    already connected :class:`bridge.RigClient` to use instead of a new one.
    """

    def __init__(self, endpoint: str, rig: str, *, name: str | None = None, timeout_s: float = 60.0,
                 seed: int | None = None, client: Any = None) -> None:
        self.endpoint, self.rig = endpoint, rig
        self._client = client if client is not None else RigClient(endpoint, rig, timeout_s=timeout_s)
        self._bus_lock = threading.Lock()
        desc = self._client.describe()
        self.description = desc
        self.n_in, self.n_out = int(desc["input"]["dims"][0]), int(desc["output"]["dims"][0])
        self.source = source_of(endpoint, rig)
        self.keys = data_keys(desc, self.source)
        self.step_seed = seed
        self._steps = 0
        self._fresh = True
        in_type = float if self.n_in == 1 else Array1D[np.float64]
        out_type = float if self.n_out == 1 else Array1D[np.float64]
        lo = float(desc["input"]["min"])
        in_init = lo if self.n_in == 1 else np.full(self.n_in, lo)
        out_init = 0.0 if self.n_out == 1 else np.zeros(self.n_out)
        self._output = _BusBackend(out_type, out_init, self.source, self.keys["output"])
        self._instrument_s = _BusBackend(float, 0.0, self.source, {"units": "s"})
        # The input is its own bluesky object, not a child: a scan names it as its motor and reads it
        # beside the device (bluesky would drop a child of a device it reads, and callbacks such as
        # BestEffortCallback then miss the motor's data). set_name and connect keep it in step.
        object.__setattr__(self, "_input", SignalRW(_BusBackend(in_type, in_init, self.source,
                                                                self.keys["input"], setter=self._step)))
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.output = SignalR(self._output)
        with self.add_children_as_readables():
            self.instrument_s = SignalR(self._instrument_s)
        self.sequence = RigSequence(self)
        super().__init__(name=rig if name is None else name)

    @property
    def input(self) -> SignalRW:
        """The settable input: ``set(u)`` drives one step (see the module docstring)."""
        return self._input

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator)
        self._input.set_name(f"{name}{self._child_name_separator}input" if name else "")

    async def connect(self, mock: Any = False, timeout: float = 10.0, force_reconnect: bool = False) -> None:
        await super().connect(mock=mock, timeout=timeout, force_reconnect=force_reconnect)
        await self._input.connect(mock=mock, timeout=timeout, force_reconnect=force_reconnect)

    # ------------------------------------------------------------------ driving
    async def drive(self, x: np.ndarray, *, reset: bool, seed: int | None):
        """Drive the rig (on a worker thread); updates ``instrument_s``; returns the DriveResult."""
        res = await asyncio.to_thread(self._drive_sync, x, reset, seed)
        self._instrument_s.set_value(float(self._instrument_s.reading["value"]) + float(res.instrument_s))
        return res

    def _drive_sync(self, x, reset, seed):
        with self._bus_lock:
            return self._client.drive(x, reset=reset, seed=seed)

    async def _step(self, value: Any) -> Any:
        """The ``input`` setter: one step of ``value``; the output signal follows."""
        u = np.asarray(value, dtype=np.float64).reshape(-1)
        if u.size not in (1, self.n_in):
            raise ConfigError(f"{self.name}.input takes 1 or {self.n_in} numbers, got {u.size}")
        x = np.broadcast_to(u, (self.n_in,)).reshape(1, 1, self.n_in).copy()
        seed = None if self.step_seed is None else int(self.step_seed) + self._steps
        res = await self.drive(x, reset=self._fresh, seed=seed)
        self._fresh = False
        self._steps += 1
        out = res.outputs[0, -1]
        self._output.set_value(float(out[0]) if self.n_out == 1 else out)
        return float(u[0]) if self.n_in == 1 else x[0, 0]

    def reset_next(self) -> None:
        """The next ``input`` step starts with the rig's reset (``stage()`` does this too)."""
        self._fresh = True
        self._steps = 0

    @AsyncStatus.wrap
    async def stage(self) -> None:
        self.reset_next()
        await super().stage()

    def close(self) -> None:
        """Close the bus client (if this device opened it)."""
        self._client.close()
