"""Pieces of :class:`bridge.server.RigServer`: the per-rig worker thread and the reply cache.

- :class:`RigWorker` runs one rig's requests one at a time, taken from a queue.
  It validates inputs against the rig's description (``bridge.rig.check_inputs``)
  before the rig sees them, maps exceptions to error codes (``RigError`` ->
  its code, ``TimeoutError`` -> ``TIMEOUT``, anything else -> ``RIG_FAULT``),
  checks the result's shapes, and sends ``[id, code, fault, header, bufs...]`` to
  the server's loop over an inproc PUSH socket it owns.
- Fault injection hook: a rig (or the rig a ``GuardedRig`` wraps) may have a
  method ``bridge_fault_hook(op) -> str | None``, called after each ``describe``
  or ``drive`` it executed. It returns ``None`` (reply normally), ``"drop"``
  (keep the reply in the cache but do not send it) or ``"corrupt"`` (send a
  damaged copy; the cache keeps the good one), so a retry with the same id gets
  the true reply without a second drive. ``emulator/faults.py`` implements it;
  bridge never imports the emulator.
- :class:`ReplyCache` keeps reply frames by request id, bounded by count, age
  (seconds) and total bytes.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import zmq

from . import protocol as P
from .datakeys import with_data_keys
from .errors import RigError, StationError
from .headers import reply_header
from .rig import check_inputs

log = logging.getLogger("bridge.server")

_F8 = np.dtype("<f8")

SAFE_OP = "#safe"   # internal job: make the rig safe (lease ran out); never a wire op
FAULTS = ("", "drop", "corrupt")
INLINE_S = 0.5e-3   # requests predicted to take less wall time run on the server's loop thread
LEARN_RUNS = 3      # timed runs on the worker thread before a rig may take the fast path


class ReplyCache:
    """Reply frames by request id, bounded by count, age (seconds) and total bytes.

    Insertion is O(1): the oldest entry goes when the count is exceeded; age and
    byte bounds are checked against the oldest entry only when it may have expired
    (``_expire_at``) or the bytes overflow.
    """

    def __init__(self, size: int, age_s: float, max_bytes: int) -> None:
        self.size, self.age_s, self.max_bytes = size, age_s, max_bytes
        self._d: OrderedDict[str, tuple[float, tuple, list, int]] = OrderedDict()
        self.nbytes = 0
        self._expire_at = math.inf   # when the oldest entry runs out of age

    def _evict(self, now: float) -> None:
        d = self._d
        while d:
            t, _, _, n = next(iter(d.values()))
            if len(d) > self.size or self.nbytes > self.max_bytes or now - t > self.age_s:
                d.popitem(last=False)
                self.nbytes -= n
            else:
                self._expire_at = t + self.age_s
                return
        self._expire_at = math.inf

    def get(self, rid: str) -> tuple[tuple, list] | None:
        hit = self._d.get(rid)
        if hit is None:
            return None
        now = time.monotonic()
        if now - hit[0] > self.age_s:
            self._evict(now)
            return None
        return hit[1], hit[2]

    def put(self, rid: str, key: tuple, frames: list) -> None:
        n = 0
        for f in frames:
            n += f.nbytes if type(f) is np.ndarray else len(f)
        if n > self.max_bytes or self.size == 0:
            return
        now = time.monotonic()
        d = self._d
        old = d.pop(rid, None)
        if old is not None:
            self.nbytes -= old[3]
        d[rid] = (now, key, frames, n)
        self.nbytes += n
        if len(d) > self.size:
            self.nbytes -= d.popitem(last=False)[1][3]
        if self.nbytes > self.max_bytes or now >= self._expire_at or len(d) == 1:
            self._evict(now)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, rid: str) -> bool:
        """Whether ``rid`` has an entry (perhaps too old: :meth:`get` then answers None)."""
        return rid in self._d


class RigWorker(threading.Thread):
    """Runs one rig's requests one at a time; replies go back through an inproc PUSH."""

    def __init__(self, server: Any, name: str, rig: Any, description: dict) -> None:
        super().__init__(name=f"rig-{name}", daemon=True)
        self.server, self.rig_name, self.rig, self.description = server, name, rig, description
        self.jobs: queue.Queue = queue.Queue()
        self.waiting = 0      # requests queued or running (touched by the loop thread only)
        self.drives = 0       # drives executed
        self.rate_s = None    # seconds per input element, a slowly decaying maximum; None = unknown
        self.runs = 0
        self.inline_ok = (description.get("emulated") is not False
                          and getattr(rig, "bridge_inline", True) is not False)
        self._limits_of: Any = None   # the description self._lim was computed from
        self._lim = (0, 0.0, 0.0, 0)
        hook = getattr(rig, "bridge_fault_hook", None)
        self.fault_hook = hook if callable(hook) else None

    def run(self) -> None:
        push = self.server.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDTIMEO, 1000)  # the loop may be gone at shutdown
        push.connect(self.server._results_ep)
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    break
                rid, op, args = job
                code, frames, fault = self.execute(rid, op, args)
                try:
                    P.send_frames(push, [rid.encode(), code.encode(), fault.encode(), *frames])
                except zmq.ZMQError:  # loop gone (shutdown): nobody to answer
                    pass
        finally:
            push.close(linger=0)
            make_safe(self.rig_name, self.rig)

    def fast(self, args: dict) -> bool:
        """Whether a request is predicted to take under ``INLINE_S`` of wall time.

        The prediction is ``rate_s * elements`` (input elements of a drive, 1
        otherwise), where ``rate_s`` is the slowest recent seconds per element
        (it decays by 10 % per request). It needs ``LEARN_RUNS`` timed runs first,
        so slow rigs (emulators with real clocks) run on their worker thread. Real
        rigs (``describe()["emulated"] is False``) and rigs with a false
        ``bridge_inline`` attribute never take the fast path.
        """
        if self.rate_s is None or self.runs < LEARN_RUNS or not self.inline_ok:
            return False
        x = args.get("inputs")
        n = x.size if isinstance(x, np.ndarray) else 1
        return self.rate_s * max(n, 1) < INLINE_S

    def execute(self, rid: str, op: str, args: dict) -> tuple[str, list, str]:
        """Run one request; (error code or "", reply frames, fault). Times it for :meth:`fast`."""
        if op == SAFE_OP:
            make_safe(self.rig_name, self.rig, close=False)
            return "", [], ""
        t0 = _perf_counter()
        if op == P.DRIVE:
            try:
                code, frames = "", self._drive(rid, args)
            except Exception as exc:
                code, frames = self._failed(rid, op, exc)
            x = args["inputs"]
            n = x.size if type(x) is np.ndarray else 1
        else:
            code, frames = self._execute(rid, op, args)
            n = 1
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

    def _execute(self, rid: str, op: str, args: dict) -> tuple[str, list]:
        """A describe (or a drive) as (code, frames)."""
        if op == P.DRIVE:
            try:
                return "", self._drive(rid, args)
            except Exception as exc:
                return self._failed(rid, op, exc)
        try:
            d = self.rig.describe()
            if not isinstance(d, dict):
                raise RigError(P.RIG_FAULT, f"describe() returned {type(d).__name__}, not a dict")
            self.description = d
        except Exception as exc:
            return self._failed(rid, op, exc)
        try:
            bound = getattr(self.server, "endpoints", None) or [None]   # DataKeys: bridge/datakeys.py
            return "", P.encode(P.reply_ok(rid, with_data_keys(d, bound[0], self.rig_name)))
        except Exception as exc:
            log.exception("cannot encode the reply of rig %s", self.rig_name)
            return P.INTERNAL, P.error_frames(rid, P.INTERNAL, f"cannot encode the reply of rig '{self.rig_name}': {exc}")

    def _limits(self) -> tuple[int, float, float, int]:
        """(n_in, input min, input max, n_out) of the current description, computed once per description."""
        d = self.description
        if d is not self._limits_of:
            inp = d["input"]
            self._lim = (int(inp["dims"][0]), float(inp["min"]), float(inp["max"]), int(d["output"]["dims"][0]))
            self._limits_of = d
        return self._lim

    def _drive(self, rid: str, args: dict) -> list:
        """Validate, drive the rig, check its result; the reply frames ``[header, outputs, initial]``."""
        n_in, lo, hi, n_out = self._limits()
        x = args["inputs"]
        # BadInput / OutOfRange before the rig. Fast path (valid float64 within finite bounds):
        # one min and one max reduction (NaN fails both comparisons); else the precise check.
        if not (type(x) is np.ndarray and x.dtype is _F8 and x.ndim == 3 and x.shape[2] == n_in and x.size
                and -math.inf < lo and hi < math.inf and _in_range(x, lo, hi)):
            x = check_inputs(x, self.description)
        self.drives += 1
        res = self.rig.drive(x, reset=args.get("reset", True), seed=args.get("seed"))
        out, init = _f8(res.outputs), _f8(res.initial)
        shape = x.shape
        if out.shape != (shape[0], shape[1], n_out) or init.shape != (shape[0], n_out):
            B, T = shape[:2]
            raise RigError(P.RIG_FAULT, f"rig '{self.rig_name}' returned outputs {out.shape} and initial "
                                        f"{init.shape}; expected {(B, T, n_out)} and {(B, n_out)}")
        t = float(res.instrument_s)
        if not 0 <= t < math.inf:
            raise RigError(P.RIG_FAULT, f"rig '{self.rig_name}' returned instrument_s={t}")
        # The reply, without the generic walk of P.encode (header from cached pieces).
        return [reply_header(rid, out.shape, init.shape, t), out, init]


_umin, _umax = np.minimum.reduce, np.maximum.reduce
_SMALL = 64   # up to this many elements, the range check runs on a Python list (cheaper than numpy)


def _in_range(x: np.ndarray, lo: float, hi: float) -> bool:
    """Whether every element of the float64 array ``x`` is finite and in ``lo..hi`` (False: not sure,
    e.g. a sum that overflows; the caller then runs the precise check)."""
    if x.size <= _SMALL:
        v = x.ravel().tolist()
        s = sum(v)
        return s - s == 0 and lo <= min(v) and max(v) <= hi   # NaN/inf make s - s NaN
    return lo <= _umin(x, None) and _umax(x, None) <= hi      # NaN fails both comparisons
_perf_counter = time.perf_counter


def _f8(a: Any) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype is _F8 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=_F8)


def validate_inputs(x: Any, description: dict) -> np.ndarray:
    """:func:`bridge.rig.check_inputs` with a fast path for valid float64 inputs.

    Valid float64 ``(B, T, n_in)`` inputs within a finite ``min..max`` pass after
    one ``min()`` and one ``max()`` (NaN fails both comparisons); anything else
    goes through ``check_inputs``, which raises the precise error.
    """
    if type(x) is np.ndarray and x.dtype is _F8 and x.ndim == 3 and x.size:
        inp = description["input"]
        lo, hi = inp["min"], inp["max"]
        if (x.shape[2] == inp["dims"][0] and -math.inf < lo and hi < math.inf
                and lo <= x.min() and x.max() <= hi):
            return x
    return check_inputs(x, description)


def make_safe(name: str, rig: Any, close: bool = True) -> None:
    """Call the rig's ``make_safe()`` and (``close``) ``close()`` if it has them; log failures."""
    for method in ("make_safe", "close") if close else ("make_safe",):
        fn = getattr(rig, method, None)
        if callable(fn):
            try:
                fn()
            except Exception:
                log.exception("rig %s: %s() failed during shutdown", name, method)


def check_description(name: str, d: Any) -> dict:
    try:
        int(d["input"]["dims"][0]), float(d["input"]["min"]), float(d["input"]["max"])
        int(d["output"]["dims"][0])
    except Exception as exc:
        raise StationError(f"rig '{name}': describe() must give input.dims, input.min, input.max and "
                           f"output.dims (see bridge/rig.py); got {d!r} ({exc})") from None
    return d
