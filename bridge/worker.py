"""Pieces of :class:`bridge.server.RigServer`: the per-rig worker thread and the reply cache.

- :class:`RigWorker` runs one rig's requests one at a time, taken from a queue.
  It validates inputs against the rig's description (``bridge.rig.check_inputs``)
  before the rig sees them, maps exceptions to error codes (``RigError`` ->
  its code, ``TimeoutError`` -> ``TIMEOUT``, anything else -> ``RIG_FAULT``),
  checks the result's shapes, and sends ``[id, code, header, bufs...]`` to the
  server's loop over an inproc PUSH socket it owns.
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
from .errors import RigError, StationError
from .rig import check_inputs

log = logging.getLogger("bridge.server")


class ReplyCache:
    """Reply frames by request id, bounded by count, age (seconds) and total bytes."""

    def __init__(self, size: int, age_s: float, max_bytes: int) -> None:
        self.size, self.age_s, self.max_bytes = size, age_s, max_bytes
        self._d: OrderedDict[str, tuple[float, tuple, list, int]] = OrderedDict()
        self.nbytes = 0

    def _evict(self, now: float) -> None:
        while self._d:
            rid, (t, _, _, n) = next(iter(self._d.items()))
            if len(self._d) > self.size or self.nbytes > self.max_bytes or now - t > self.age_s:
                del self._d[rid]
                self.nbytes -= n
            else:
                break

    def get(self, rid: str) -> tuple[tuple, list] | None:
        self._evict(time.monotonic())
        hit = self._d.get(rid)
        return None if hit is None else (hit[1], hit[2])

    def put(self, rid: str, key: tuple, frames: list) -> None:
        n = sum(len(f) for f in frames)
        if n > self.max_bytes or self.size == 0:
            return
        self._d[rid] = (time.monotonic(), key, frames, n)
        self.nbytes += n
        self._evict(time.monotonic())

    def __len__(self) -> int:
        return len(self._d)


class RigWorker(threading.Thread):
    """Runs one rig's requests one at a time; replies go back through an inproc PUSH."""

    def __init__(self, server: Any, name: str, rig: Any, description: dict) -> None:
        super().__init__(name=f"rig-{name}", daemon=True)
        self.server, self.rig_name, self.rig, self.description = server, name, rig, description
        self.jobs: queue.Queue = queue.Queue()
        self.waiting = 0      # requests queued or running (touched by the loop thread only)
        self.drives = 0       # drives executed (touched by this thread only)

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
                code, frames = self._execute(rid, op, args)
                try:
                    push.send_multipart([rid.encode(), code.encode(), *frames], copy=False)
                except zmq.ZMQError:  # loop gone (shutdown): nobody to answer
                    pass
        finally:
            push.close(linger=0)
            make_safe(self.rig_name, self.rig)

    def _execute(self, rid: str, op: str, args: dict) -> tuple[str, list]:
        """(error code or "", reply frames)."""
        try:
            if op == P.DESCRIBE:
                d = self.rig.describe()
                if not isinstance(d, dict):
                    raise RigError(P.RIG_FAULT, f"describe() returned {type(d).__name__}, not a dict")
                self.description = d
                result: dict = d
            else:
                result = self._drive(args)
        except RigError as exc:
            code = exc.code if exc.code in P.CODES else P.RIG_FAULT
            return code, P.error_frames(rid, code, exc.message)
        except TimeoutError as exc:
            return P.TIMEOUT, P.error_frames(rid, P.TIMEOUT, f"rig '{self.rig_name}' timed out: {exc}")
        except Exception as exc:
            log.warning("rig %s failed on %s: %r", self.rig_name, op, exc)
            return P.RIG_FAULT, P.error_frames(
                rid, P.RIG_FAULT, f"rig '{self.rig_name}' failed: {type(exc).__name__}: {exc}")
        try:
            return "", P.encode(P.reply_ok(rid, result))
        except Exception as exc:
            log.exception("cannot encode the reply of rig %s", self.rig_name)
            return P.INTERNAL, P.error_frames(rid, P.INTERNAL, f"cannot encode the reply of rig '{self.rig_name}': {exc}")

    def _drive(self, args: dict) -> dict:
        x = check_inputs(args["inputs"], self.description)  # BadInput / OutOfRange before the rig
        self.drives += 1
        res = self.rig.drive(x, reset=args.get("reset", True), seed=args.get("seed"))
        out = np.ascontiguousarray(res.outputs, dtype="<f8")
        init = np.ascontiguousarray(res.initial, dtype="<f8")
        B, T = x.shape[:2]
        n_out = int(self.description["output"]["dims"][0])
        if out.shape != (B, T, n_out) or init.shape != (B, n_out):
            raise RigError(P.RIG_FAULT, f"rig '{self.rig_name}' returned outputs {out.shape} and initial "
                                        f"{init.shape}; expected {(B, T, n_out)} and {(B, n_out)}")
        t = float(res.instrument_s)
        if not math.isfinite(t) or t < 0:
            raise RigError(P.RIG_FAULT, f"rig '{self.rig_name}' returned instrument_s={t}")
        return {"outputs": out, "initial": init, "instrument_s": t}


def make_safe(name: str, rig: Any) -> None:
    for method in ("make_safe", "close"):
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
