"""Fault injection for emulated rigs: the station key ``faults``.

::

    [rigs.nra]
    backend = "physics.nra"
    faults = { drop = 0.05, delay = 0.1, delay_s = 0.5, rig_fault = 0.02, corrupt = 0.05,
               crash_after = 500, seed = 1 }

Every emulated rig (``physics.nra``, ``physics.asvi``) takes ``faults``; any other
rig can be wrapped with :class:`FaultyRig`. Faults apply to drives only;
probabilities are per drive, drawn from their own generator (``seed``), so a
fault pattern is reproducible and never touches the rig's noise stream.

========================  =====================================================================
key                       what happens
========================  =====================================================================
``drop`` (0..1)           the drive runs, its reply is not sent (the server caches it): a client
                          retrying with the same id gets the cached reply, no second drive
``drop_first`` (int)      drop the replies of the first N drives (deterministic, for tests)
``delay`` (0..1),         the drive takes ``delay_s`` extra wall-clock seconds (a client that
``delay_s`` (s)           times out meanwhile retries and is joined to the running drive)
``rig_fault`` (0..1)      the drive fails with ``RIG_FAULT`` before it changes the rig's state
``fail_first`` (int)      the first N drives fail with ``RIG_FAULT``
``corrupt`` (0..1)        the reply is damaged in transit (the client's decode refuses it and it
``corrupt_first`` (int)   retries with the same id; the server's cache holds the good reply)
``crash_after`` (int)     the whole server process exits at once (``os._exit(70)``, no cleanup)
                          after executing drive N, before replying: a power cut
``seed`` (int)            seed of the fault draws (default 0)
========================  =====================================================================

How the server learns of "drop"/"corrupt": the rig exposes
``bridge_fault_hook(op) -> "drop" | "corrupt" | None`` (documented in
:mod:`bridge._worker`), which the server calls after each request it ran. bridge
never imports this module.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from bridge.errors import RigError

from .errors import ConfigError

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70


@dataclass(frozen=True)
class FaultPlan:
    """The ``faults`` table, checked. Probabilities in 0..1, counts >= 0, seconds >= 0."""

    drop: float = 0.0
    drop_first: int = 0
    delay: float = 0.0
    delay_s: float = 0.0
    rig_fault: float = 0.0
    fail_first: int = 0
    corrupt: float = 0.0
    corrupt_first: int = 0
    crash_after: int = 0
    seed: int = 0

    @classmethod
    def from_table(cls, table: Any) -> "FaultPlan":
        if isinstance(table, FaultPlan):
            return table
        if not isinstance(table, dict):
            raise ConfigError(f"faults must be a table like {{ drop = 0.1, seed = 1 }}, got {table!r}")
        names = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(table) - set(names))
        if unknown:
            raise ConfigError(f"faults has unknown key(s) {unknown}; it takes {sorted(names)}")
        out: dict[str, Any] = {}
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"faults.{key} must be a number, got {value!r}")
            if names[key] == "int":
                if int(value) != value or value < 0:
                    raise ConfigError(f"faults.{key} must be an integer >= 0, got {value!r}")
                out[key] = int(value)
            else:
                if not np.isfinite(value) or value < 0 or (key != "delay_s" and value > 1):
                    raise ConfigError(f"faults.{key} must be " + ("seconds >= 0" if key == "delay_s"
                                                                    else "a probability in 0..1") + f", got {value!r}")
                out[key] = float(value)
        return cls(**out)

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "seed")


class FaultInjector:
    """Applies a :class:`FaultPlan`: :meth:`before_drive` (delay, RIG_FAULT) and :meth:`hook`."""

    def __init__(self, plan: FaultPlan, name: str = "?") -> None:
        self.plan, self.name = plan, name
        self._rng = np.random.default_rng([plan.seed, 0xFA017])
        self._lock = threading.Lock()
        self.drives = 0                       # drives that reached before_drive
        self.counts = {"drop": 0, "delay": 0, "rig_fault": 0, "corrupt": 0}

    def before_drive(self) -> None:
        """Called at the start of a drive: may sleep (delay) or raise RIG_FAULT (state untouched)."""
        p = self.plan
        with self._lock:
            self.drives += 1
            n = self.drives
            delay = p.delay > 0 and self._rng.random() < p.delay
            fail = n <= p.fail_first or (p.rig_fault > 0 and self._rng.random() < p.rig_fault)
        if delay:
            self.counts["delay"] += 1
            time.sleep(p.delay_s)
        if fail:
            self.counts["rig_fault"] += 1
            raise RigError("RIG_FAULT", f"rig '{self.name}': injected fault on drive {n} (station faults "
                                        "table); the rig state is unchanged, retry with a new request")

    def hook(self, op: str) -> str | None:
        """``bridge_fault_hook``: after a request ran; may crash the process, drop or damage the reply."""
        if op != "drive":
            return None
        p = self.plan
        with self._lock:
            n = self.drives
            if p.crash_after and n >= p.crash_after:
                log.error("rig %s: injected crash after drive %d (station faults table)", self.name, n)
                os._exit(CRASH_EXIT_CODE)
            if n <= p.drop_first or (p.drop > 0 and self._rng.random() < p.drop):
                self.counts["drop"] += 1
                return "drop"
            if n <= p.corrupt_first or (p.corrupt > 0 and self._rng.random() < p.corrupt):
                self.counts["corrupt"] += 1
                return "corrupt"
        return None


def make_injector(faults: Any, name: str) -> FaultInjector | None:
    """An injector for a station ``faults`` value (None or an inactive table: no injector)."""
    if faults is None:
        return None
    plan = FaultPlan.from_table(faults)
    return FaultInjector(plan, name) if plan.active else None


class FaultyRig:
    """Wrap any rig with a ``faults`` table (for rigs that do not take ``faults`` themselves)."""

    def __init__(self, rig: Any, faults: Any) -> None:
        self.rig = rig
        self.faults = FaultInjector(FaultPlan.from_table(faults), rig.describe().get("name", "?"))
        self.bridge_fault_hook = self.faults.hook

    def describe(self) -> dict[str, Any]:
        return self.rig.describe()

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None):
        self.faults.before_drive()
        return self.rig.drive(inputs, reset=reset, seed=seed)

    def __getattr__(self, attr: str) -> Any:
        if attr == "rig":
            raise AttributeError(attr)
        return getattr(self.rig, attr)
