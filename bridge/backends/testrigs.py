"""Two simple rigs that honour the full Rig contract, for tests and benchmarks.

- :class:`EchoRig` (backend ``echo``): outputs = inputs, no work, a wide range.
  The bus benchmark drives it; its outputs are the very array it was given.
- :class:`LeakyRig` (backend ``leaky``): a noisy leaky integrator with fading
  memory, ``n_out`` channels with different leak rates. The simplest rig on
  which noise, seeds and ``reset=False`` mean something.

Both count their calls (``drive_calls``, ``make_safe_calls``) and record
``closed`` so tests can check that the server refuses bad input before the rig
and makes rigs safe on shutdown. ``latency_s`` makes a drive take that many
wall-clock seconds (to test concurrency and client retries).
"""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ..errors import BadInput
from ..rig import DriveResult, check_inputs

_F8 = np.dtype("<f8")


class _TestRig:
    kind = "test"

    def __init__(self, name: str, *, n_in: int, n_out: int, lo: float, hi: float,
                 step_s: float, latency_s: float, units: str = "a.u.") -> None:
        if n_in < 1 or n_out < 1:
            raise ValueError(f"n_in and n_out must be >= 1, got {n_in}, {n_out}")
        if not lo < hi:
            raise ValueError(f"the input range needs lo < hi, got {lo}..{hi}")
        if step_s < 0 or latency_s < 0:
            raise ValueError("step_s and latency_s are seconds >= 0")
        self.name, self.n_in, self.n_out = name, int(n_in), int(n_out)
        self.lo, self.hi, self.step_s, self.latency_s = float(lo), float(hi), float(step_s), float(latency_s)
        self.units = units
        self.drive_calls = 0
        self.make_safe_calls = 0
        self.closed = False
        self._state: np.ndarray | None = None  # (B, n_out) observable the next reset=False drive starts from
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "backend": self.kind,
                "source": f"sim+{self.kind}://{self.name}", "emulated": True,
                "input": {"dims": [self.n_in], "units": self.units, "min": self.lo, "max": self.hi},
                "output": {"dims": [self.n_out], "units": self.units},
                "step_s": self.step_s}

    def _check(self, inputs: Any) -> np.ndarray:
        return check_inputs(inputs, self.describe())

    def _start(self, inputs: Any, reset: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = self._check(inputs)
        self.drive_calls += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        prev = None
        if not reset and self._state is not None:
            if self._state.shape[0] != x.shape[0]:
                raise BadInput(f"reset=False continues {self._state.shape[0]} experiment(s) from the "
                               f"previous drive, but got B={x.shape[0]}; drive with that B or reset=True")
            prev = self._state
        return x, prev

    def make_safe(self) -> None:
        self.make_safe_calls += 1

    def close(self) -> None:
        self.closed = True


class EchoRig(_TestRig):
    """Outputs = inputs (``n_out = n_in``); ``initial`` is zeros after a reset, else the last output.

    Range ``lo..hi`` (default +-1e9), no noise, ``instrument_s = B * T * step_s``. It checks
    shapes only (the server checks values before any rig), so it costs nothing per element.
    """

    kind = "echo"

    def _check(self, inputs: Any) -> np.ndarray:
        # No work: shape only. Values were range-checked by the server (bridge.rig.check_inputs);
        # driven directly, the echo returns whatever it was given.
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim != 3 or x.shape[2] != self.n_in or not x.size:
            return check_inputs(x, self.describe())  # raises the precise BadInput
        return x

    def __init__(self, name: str = "echo", *, n_in: int = 1, lo: float = -1e9, hi: float = 1e9,
                 step_s: float = 0.0, latency_s: float = 0.0, seed: int | None = None) -> None:
        super().__init__(name, n_in=n_in, n_out=n_in, lo=lo, hi=hi, step_s=step_s, latency_s=latency_s)

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        with self._lock:
            x = inputs
            if (reset and type(x) is np.ndarray and x.dtype is _F8 and x.ndim == 3 and x.shape[2] == self.n_in
                    and x.size and not self.latency_s):
                self.drive_calls += 1   # the common case of _start, inlined
                prev = None
            else:
                x, prev = self._start(inputs, reset)
            B, T = x.shape[:2]
            # prev is the last drive's own copy, replaced (never changed in place) just below
            initial = prev if prev is not None else np.zeros((B, self.n_out))
            self._state = x[:, -1, :].copy()
            return DriveResult(x, initial, B * T * self.step_s)


class LeakyRig(_TestRig):
    """A noisy leaky integrator: ``x[t+1] = (1 - a) x[t] + a tanh(gain u[t] w) + sigma n[t]``.

    ``n_out`` channels with leak rates ``a`` spread over ``leak`` (fading memory
    of about 1/a steps), fixed input weights ``w`` (``n_in -> n_out``, from
    ``seed``), intrinsic noise ``sigma = noise``, readout noise ``readout_noise``,
    reset state ``x = 0`` plus ``reset_noise``. Inputs ``lo..hi`` (default -1..1).
    A drive with a ``seed`` draws all its noise from that seed; without one, from
    the rig's own generator (seeded by the constructor's ``seed``).
    """

    kind = "leaky"

    def __init__(self, name: str = "leaky", *, n_in: int = 1, n_out: int = 4,
                 leak: tuple[float, float] = (0.05, 0.5), gain: float = 1.5,
                 noise: float = 0.05, readout_noise: float = 0.02, reset_noise: float = 0.05,
                 lo: float = -1.0, hi: float = 1.0, step_s: float = 0.01,
                 latency_s: float = 0.0, seed: int | None = None) -> None:
        super().__init__(name, n_in=n_in, n_out=n_out, lo=lo, hi=hi, step_s=step_s, latency_s=latency_s)
        a0, a1 = float(leak[0]), float(leak[1])
        if not (0 < a0 <= 1 and 0 < a1 <= 1):
            raise ValueError(f"leak rates must lie in (0, 1], got {leak}")
        if min(noise, readout_noise, reset_noise) < 0:
            raise ValueError("noise levels must be >= 0")
        self.leak = np.geomspace(a0, a1, self.n_out)
        wrng = np.random.default_rng(12345 if seed is None else seed)
        self.w = wrng.normal(0.0, 1.0 / np.sqrt(self.n_in), size=(self.n_in, self.n_out))
        self.gain, self.noise = float(gain), float(noise)
        self.readout_noise, self.reset_noise = float(readout_noise), float(reset_noise)
        self._rng = np.random.default_rng(seed)
        self._x: np.ndarray | None = None  # hidden state (B, n_out)

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        with self._lock:
            u, prev = self._start(inputs, reset)
            rng = np.random.default_rng(seed) if seed is not None else self._rng
            B, T, _ = u.shape
            if prev is None:
                x = self.reset_noise * rng.standard_normal((B, self.n_out))
            else:
                x = self._x.copy()
            initial = x + self.readout_noise * rng.standard_normal(x.shape)
            drive = np.tanh(self.gain * (u @ self.w))  # (B, T, n_out)
            kicks = self.noise * rng.standard_normal((B, T, self.n_out))
            out = np.empty((B, T, self.n_out))
            a = self.leak
            for t in range(T):
                x = (1.0 - a) * x + a * drive[:, t] + kicks[:, t]
                out[:, t] = x
            out += self.readout_noise * rng.standard_normal(out.shape)
            self._x = x
            self._state = out[:, -1, :].copy()
            return DriveResult(outputs=out, initial=initial, instrument_s=B * T * self.step_s)
