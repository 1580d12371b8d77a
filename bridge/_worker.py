"""A rig's worker thread inside :class:`bridge.server.RigServer` (private).

:class:`RigWorker` runs one rig's requests one at a time, taken from a queue.
For each it

- checks the rig's lease **when the request is executed** (not when it was
  queued): a drive from anyone but the lease's owner is answered ``BUSY``;
- validates the inputs against the rig's description
  (:func:`bridge.rig.check_inputs`, the one range check) before the rig sees them;
- maps exceptions to error codes (``RigError`` -> its code, ``TimeoutError`` ->
  ``TIMEOUT``, anything else -> ``RIG_FAULT``) and checks the result's shapes;
- sends ``[job, code, fault, header, bufs...]`` to the server's loop over an
  inproc PUSH socket of its own.

Fault injection hook: a rig (or the rig a ``GuardedRig`` wraps) may have a method
``bridge_fault_hook(op) -> str | None``, called after each ``describe`` or
``drive`` it executed. It returns ``None`` (reply normally), ``"drop"`` (keep the
reply in the cache but do not send it) or ``"corrupt"`` (send a damaged copy; the
cache keeps the good one), so a retry with the same id gets the true reply
without a second drive. ``emulator/faults.py`` implements it; bridge never
imports the emulator.

Inline: :meth:`RigWorker.fast` predicts whether a request would take well under
a millisecond; the server then runs it on its loop thread (two thread hand-offs
saved). Real rigs (``describe()["emulated"] is False``) never run inline.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Any, Callable

import numpy as np
import zmq

from . import protocol as P
from .datakeys import with_data_keys
from .errors import RigError, StationError
from .rig import check_inputs

log = logging.getLogger("bridge.server")

_F8 = np.dtype("<f8")
SAFE_OP = "#safe"   # internal job: make the rig safe (lease ran out); never a wire op
FAULTS = ("", "drop", "corrupt")
INLINE_S = 0.5e-3   # requests predicted to take less wall time run on the server's loop thread
LEARN_RUNS = 3      # timed runs on the worker thread before a rig may take the inline path
_perf_counter = time.perf_counter


class RigWorker(threading.Thread):
    """Runs one rig's requests one at a time; replies go back through an inproc PUSH.

    ``lease_check(rig, owner) -> str | None``: the message of a lease that keeps
    ``owner`` from driving now (None: go ahead); ``leases``: the server's lease table
    (a dict, read only; empty: no lease to check). ``context`` and ``results_ep``:
    where to push results.
    """

    def __init__(self, name: str, rig: Any, description: dict, *, context: zmq.Context, results_ep: str,
                 lease_check: Callable[[str, tuple], str | None], leases: dict,
                 endpoint: Callable[[], str | None] = lambda: None,
                 max_drive_elements: int | None = None) -> None:
        super().__init__(name=f"rig-{name}", daemon=True)
        self.max_drive_elements = max_drive_elements   # told to clients in describe replies
        self.endpoint = endpoint       # the server's first bound endpoint (DataKeys' source), once bound
        self.rig_name, self.rig, self.description = name, rig, description
        self.context, self.results_ep, self.lease_check, self.leases = context, results_ep, lease_check, leases
        self.jobs: queue.Queue = queue.Queue()
        self.waiting = 0      # requests queued or running (touched by the loop thread only)
        self.drives = 0       # drives executed
        self.busy = False     # a request is executing now (set by this thread)
        self.rate_s = None    # seconds per input element, a slowly decaying maximum; None = unknown
        self.runs = 0
        self.inline_ok = (description.get("emulated") is not False
                          and getattr(rig, "bridge_inline", True) is not False)
        hook = getattr(rig, "bridge_fault_hook", None)
        self.fault_hook = hook if callable(hook) else None

    def run(self) -> None:
        push = self.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDTIMEO, 1000)  # the loop may be gone at shutdown
        push.connect(self.results_ep)
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    break
                jid, rid, op, args, owner = job
                code, frames, fault = self.execute(rid, op, args, owner)
                try:
                    P.send_frames(push, [jid.encode(), code.encode(), fault.encode(), *frames])
                except zmq.ZMQError:  # loop gone (shutdown): nobody to answer
                    pass
        finally:
            push.close(linger=0)

    def drop_queued(self) -> int:
        """Forget the requests still queued (shutdown); how many there were."""
        n = 0
        while True:
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                return n
            n += 1

    def fast(self, args: dict) -> bool:
        """Whether a request is predicted to take under ``INLINE_S`` of wall time.

        The prediction is ``rate_s * elements`` (input elements of a drive, 1
        otherwise), where ``rate_s`` is the slowest recent seconds per element
        (it decays by 10 % per request). It needs ``LEARN_RUNS`` timed runs first,
        so slow rigs (emulators with real clocks) run on their worker thread. Real
        rigs (``describe()["emulated"] is False``) and rigs with a false
        ``bridge_inline`` attribute never take the fast path.
        """
        if self.rate_s is None or self.runs < LEARN_RUNS or not self.inline_ok or self.fault_hook is not None:
            return False
        x = args.get("inputs")
        n = x.size if isinstance(x, np.ndarray) else 1
        return self.rate_s * max(n, 1) < INLINE_S

    def execute(self, rid: str, op: str, args: dict, owner: tuple = (None, None)) -> tuple[str, list, str]:
        """Run one request; (error code or "", reply frames, fault). Times it for :meth:`fast`."""
        if op == SAFE_OP:
            make_safe(self.rig_name, self.rig, close=False)
            return "", [], ""
        self.busy = True
        t0 = _perf_counter()
        try:
            if op == P.DRIVE:
                x = args["inputs"]
                n = x.size if type(x) is np.ndarray else 1
                blocked = self.lease_check(self.rig_name, owner) if self.leases else None
                if blocked is not None:
                    return P.BUSY, P.error_frames(rid, P.BUSY, blocked), ""
                try:
                    code, frames = "", self._drive(rid, args)
                except Exception as exc:
                    code, frames = self._failed(rid, op, exc)
            else:
                n = 1
                code, frames = self._describe(rid)
        finally:
            self.busy = False
        self.note_run(_perf_counter() - t0, n)
        if self.fault_hook is None:
            return code, frames, ""
        fault = ""
        try:
            fault = self.fault_hook(op) or ""
        except Exception:
            log.exception("rig %s: bridge_fault_hook failed", self.rig_name)
        if fault not in FAULTS:
            log.warning("rig %s: bridge_fault_hook returned %r, not one of %s", self.rig_name, fault, FAULTS)
            fault = ""
        return code, frames, fault

    def note_run(self, elapsed_s: float, n: int) -> None:
        """Record one timed run of ``n`` input elements for :meth:`fast`."""
        rate = elapsed_s / (n or 1)
        self.runs += 1
        self.rate_s = rate if self.rate_s is None else max(rate, 0.9 * self.rate_s)

    def _failed(self, rid: str, op: str, exc: Exception) -> tuple[str, list]:
        """(code, error reply frames) for an exception raised while executing ``op``."""
        if isinstance(exc, RigError):
            code = exc.code if exc.code in P.CODES else P.RIG_FAULT
            return code, P.error_frames(rid, code, exc.message)
        if isinstance(exc, TimeoutError):
            return P.TIMEOUT, P.error_frames(rid, P.TIMEOUT, f"rig '{self.rig_name}' timed out: {exc}")
        log.warning("rig %s failed on %s: %r", self.rig_name, op, exc)
        return P.RIG_FAULT, P.error_frames(
            rid, P.RIG_FAULT, f"rig '{self.rig_name}' failed: {type(exc).__name__}: {exc}")

    def _describe(self, rid: str) -> tuple[str, list]:
        """A describe as (code, frames)."""
        try:
            d = self.rig.describe()
            if not isinstance(d, dict):
                raise RigError(P.RIG_FAULT, f"describe() returned {type(d).__name__}, not a dict")
            self.description = d
        except Exception as exc:
            return self._failed(rid, P.DESCRIBE, exc)
        try:
            reply = with_data_keys(d, self.endpoint(), self.rig_name)
            if self.max_drive_elements is not None:     # so that clients split larger drives
                reply = {**reply, "max_drive_elements": int(self.max_drive_elements)}
            return "", P.encode(P.reply_ok(rid, reply))
        except Exception as exc:
            log.exception("cannot encode the reply of rig %s", self.rig_name)
            return P.INTERNAL, P.error_frames(rid, P.INTERNAL, f"cannot encode the reply of rig '{self.rig_name}': {exc}")

    def _drive(self, rid: str, args: dict) -> list:
        """Validate, drive the rig, check its result; the reply frames ``[header, outputs, initial]``."""
        x = check_inputs(args["inputs"], self.description)   # BadInput / OutOfRange before the rig
        self.drives += 1
        res = self.rig.drive(x, reset=args.get("reset", True), seed=args.get("seed"))
        out, init = _f8(res.outputs), _f8(res.initial)
        B, T = x.shape[:2]
        n_out = int(self.description["output"]["dims"][0])
        if out.shape != (B, T, n_out) or init.shape != (B, n_out):
            raise RigError(P.RIG_FAULT, f"rig '{self.rig_name}' returned outputs {out.shape} and initial "
                                        f"{init.shape}; expected {(B, T, n_out)} and {(B, n_out)}")
        t = float(res.instrument_s)
        if not 0 <= t < math.inf:
            raise RigError(P.RIG_FAULT, f"rig '{self.rig_name}' returned instrument_s={t}")
        head = P.reply_ok(rid, {"outputs": P.array_ref(0, out), "initial": P.array_ref(1, init), "instrument_s": t})
        return [P.pack_header(head), out, init]


def _f8(a: Any) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype is _F8 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=_F8)


def make_safe(name: str, rig: Any, close: bool = True) -> list[str]:
    """Call the rig's ``make_safe()`` and (``close``) ``close()`` if it has them.

    Returns the failures as ``"METHOD: error"`` strings (logged too); empty when all went well.
    """
    failed = []
    for method in ("make_safe", "close") if close else ("make_safe",):
        fn = getattr(rig, method, None)
        if callable(fn):
            try:
                fn()
            except Exception as exc:
                log.exception("rig %s: %s() failed", name, method)
                failed.append(f"{method}: {type(exc).__name__}: {exc}")
    return failed


def check_description(name: str, d: Any) -> dict:
    try:
        int(d["input"]["dims"][0]), float(d["input"]["min"]), float(d["input"]["max"])
        int(d["output"]["dims"][0])
    except Exception as exc:
        raise StationError(f"rig '{name}': describe() must give input.dims, input.min, input.max and "
                           f"output.dims (see bridge/rig.py); got {d!r} ({exc})") from None
    return d
