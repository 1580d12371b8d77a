"""What the emulated rigs share: parameter checks, seeds, the drive skeleton.

A subclass implements ``_describe_extra()``, ``_reset_state(B, rng)`` (returns
``(state, initial_obs)``), ``_run(state, inputs, rng) -> (state, outputs)`` and
``_instrument_phases(inputs, reset) -> (overhead_s, per-experiment phases)``.
A state is a dict of arrays with a leading batch axis B; its ``"obs"`` entry
``(B, n_out)`` is the last observable (the next ``reset=False`` drive's initial);
:class:`EmulatedRig` handles validation (:func:`bridge.rig.check_inputs`),
seeds, ``reset=False`` continuation and the simpy timeline.

Faults: ``faults`` (a station table, see :mod:`emulator.faults`) makes the rig
drop, delay, damage or fail drives, or crash its server, for reliability tests.

Seeds: ``sample_seed`` fixes the quenched disorder (which physical sample this
is: two rigs with the same ``sample_seed`` are the same device). ``seed`` starts
the rig's own noise stream, used by drives called with ``seed=None`` (fresh noise
each call). A drive with ``seed=S`` draws all its noise from ``S``: with
``reset=True`` its outputs depend only on the inputs and ``S``.
"""
from __future__ import annotations

import threading
from functools import partial
from typing import Any

import numpy as np

from bridge import values
from bridge.errors import BadInput
from bridge.rig import DriveResult, check_inputs, check_seed

from .errors import ConfigError
from .noise import make_rng
from .timing import DriveStopped, Timeline


as_float = partial(values.as_float, error=ConfigError)
as_int = partial(values.as_int, error=ConfigError)
as_seed = partial(values.as_seed, error=ConfigError)


class EmulatedRig:
    """Base of the physics emulators; see the module docstring."""

    kind = "emulated"
    backend = "physics"

    def __init__(self, name: str, *, seed: int | None, sample_seed: int, clock: str, speed: float,
                 faults: dict | None = None):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.seed = as_seed("seed", seed)
        self.sample_seed = as_seed("sample_seed", sample_seed)
        self._stop = threading.Event()   # interrupt(): end the running drive between steps
        self.timeline = Timeline(clock, speed, stop=self._stop)
        self._rng = make_rng(self.seed)
        self._state = None          # the device's state after the last drive (batch of B)
        from .faults import make_injector
        self.faults = make_injector(faults, name)
        if self.faults is not None:  # the server consults it after each request (bridge._worker)
            self.bridge_fault_hook = self.faults.hook

    # ---- hooks for subclasses -------------------------------------------------------------
    def _describe_extra(self) -> dict[str, Any]:
        raise NotImplementedError

    def _reset_state(self, B: int, rng: np.random.Generator):
        raise NotImplementedError

    def _run(self, state, inputs: np.ndarray, rng: np.random.Generator):
        raise NotImplementedError

    def _instrument_phases(self, inputs: np.ndarray, reset: bool) -> tuple[float, list]:
        raise NotImplementedError

    def _check_stop(self) -> None:
        """Raise :class:`DriveStopped` when :meth:`interrupt` was called (subclasses call it per step)."""
        if self._stop.is_set():
            raise DriveStopped("the drive was stopped between steps (the server is shutting down); "
                               "retry it on a running server")

    # ---- the Rig interface ------------------------------------------------------------------
    def interrupt(self) -> None:
        """End a running drive at its next step (or realtime wait); later drives are refused too.

        Thread-safe; called by a server that shuts down (``bridge.server``). An emulated rig
        holds no energy, so it is safe as soon as the drive has ended; :meth:`make_safe`
        lets it be driven again.
        """
        self._stop.set()

    def make_safe(self) -> None:
        """Nothing to ramp down on an emulator; clears an :meth:`interrupt` so it can be driven again."""
        self._stop.clear()

    def describe(self) -> dict[str, Any]:
        d = {"name": self.name, "kind": self.kind, "backend": self.backend,
             "source": f"sim+physics://{self.kind}/{self.name}", "emulated": True,
             "clock": self.timeline.clock, "speed": self.timeline.speed}
        d.update(self._describe_extra())
        return d

    def drive(self, inputs: np.ndarray, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        """Drive B experiments of T steps; see :mod:`bridge.rig`.

        inputs: ``(B, T, n_in)`` in the units of ``describe()['input']``.
        reset: start each experiment with the reset protocol; ``reset=False``
            continues the state the last drive left (B must equal that drive's B,
            or that drive had B=1 and its state is copied to all B).
        seed: draw this drive's noise from ``seed`` (None: the rig's own stream).
        Returns outputs ``(B, T, n_out)``, initial ``(B, n_out)``, instrument_s.
        """
        x = check_inputs(inputs, self.describe())
        self._check_stop()
        if self.faults is not None:
            self.faults.before_drive()
        if not isinstance(reset, (bool, np.bool_)):
            raise BadInput(f"reset must be true or false, got {reset!r}")
        seed = check_seed(seed)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        B = x.shape[0]
        if reset:
            state, initial = self._reset_state(B, rng)
        else:
            if self._state is None:
                self._state, _ = self._reset_state(1, rng)     # powered up: as after a reset
            prev = len(self._state["obs"])
            if prev == B:
                state = dict(self._state)
            elif prev == 1:
                state = {k: np.repeat(v, B, axis=0) for k, v in self._state.items()}
            else:
                raise BadInput(f"reset=False continues the {prev} experiments of the last drive; "
                               f"send B={prev} experiments (got B={B}) or drive with reset=True")
            initial = state["obs"].copy()
        state, outputs = self._run(state, x, rng)
        self._state = state
        overhead, phases = self._instrument_phases(x, bool(reset))
        instrument_s = self.timeline.run(overhead, phases)
        return DriveResult(outputs=np.ascontiguousarray(outputs, dtype=np.float64),
                           initial=np.ascontiguousarray(initial, dtype=np.float64),
                           instrument_s=float(instrument_s))
