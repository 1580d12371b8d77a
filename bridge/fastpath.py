"""The bus's fast path for its most common message: a small, valid float64 drive.

Per-message Python work is most of a small drive's round trip (a raw ZeroMQ echo
of the same bytes takes ~60 us on a loaded 2-core machine, the general path adds
~70 us). These functions handle the common case in one flat pass and hand
anything else to the general code, which then gives the precise error:

- :class:`FastDrive` (mixed into :class:`bridge.server.RigServer`): a DEALER
  request ``[identity, header, inputs]`` for ``drive`` with one ``<f8`` array
  ``(B, T, n_in)`` whose frame size matches, ``reset`` a bool and ``seed`` nil or
  an int in ``0..2**64-1``, a fresh id, no lease held on the server, no CURVE, a
  rig with no fault hook that may run inline (``RigWorker.fast``): the header
  checks of ``RigServer._on_request`` and ``protocol.check_args`` are done here;
  the inputs are validated against the rig's range (``RigWorker._drive``) before
  the rig sees them; the reply is cached by id like any other, right after it is
  sent (the loop takes no message in between, so a retry still finds it).
  Anything else -> ``False`` (use the general path).
- :func:`drive_reply`: the client's decode of a drive reply
  ``[header, outputs, initial]`` into its :class:`bridge.rig.DriveResult`
  (headers packed exactly as ``bridge.headers.reply_header`` packs them, for
  shapes seen before, by a byte match); ``None`` when the reply is anything else
  (the client then uses :func:`bridge.protocol.decode`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import zmq

from . import protocol as P
from .headers import _reply_mid, known_reply, learn_reply
from .rig import DriveResult
from .worker import INLINE_S, LEARN_RUNS

_F8 = np.dtype("<f8")
_ndarray = np.ndarray
_Frame = P._Frame
_DRIVE_ARGS = P.ARGS[P.DRIVE]
_DRIVE, _VERSION, _CLIENT_KEY, _MAX_ID, _MAX_HEADER = P.DRIVE, P.VERSION, P.CLIENT_KEY, P.MAX_ID_CHARS, P.MAX_HEADER_BYTES
_SEED_END = 2**64
_ND_KEY, _MAX_NDIM = P.ND_KEY, P.MAX_NDIM
_unpackb, _refuse_ext = P._unpackb, P._refuse_ext
_send_frames = P.send_frames
_perf_counter = time.perf_counter


def _ref(ref: Any, i: int, frame: Any) -> np.ndarray | None:
    """The ``<f8`` array that ``ref`` (``{$nd: i, dtype, shape}``) declares over ``frame``, or None."""
    if type(ref) is not dict or len(ref) != 3 or ref.get("dtype") != "<f8":
        return None
    nd = ref.get(_ND_KEY)
    if type(nd) is not int or nd != i:
        return None
    shape = ref.get("shape")
    if type(shape) is not list or len(shape) > _MAX_NDIM:
        return None
    n = 8
    for d in shape:
        if type(d) is not int or d < 0:
            return None
        n *= d
    if type(frame) is not _Frame or len(frame) != n:
        return None
    return _ndarray(shape, _F8, frame)


class FastDrive:
    """``RigServer._fast_drive``: see the module docstring."""

    def _fast_drive(self, msg: list) -> bool:
        hf = msg[1]
        if len(hf) > _MAX_HEADER or self._leases.leases or self._curve or not self.inline:
            return False
        try:
            head = _unpackb(hf.buffer, ext_hook=_refuse_ext, timestamp=0, max_ext_len=0)
        except Exception:
            return False
        if type(head) is not dict or head.get("op") != _DRIVE or head.get("v") != _VERSION:
            return False
        get = head.get
        rid, rig, args, client = get("id"), get("rig"), get("args"), get(_CLIENT_KEY)
        if (type(rid) is not str or not 0 < len(rid) <= _MAX_ID or type(args) is not dict
                or (client is not None and not (type(client) is str and 0 < len(client) <= _MAX_ID))
                or not args.keys() <= _DRIVE_ARGS):
            return False
        worker = self._workers.get(rig) if type(rig) is str else None
        if (worker is None or worker.waiting or worker.fault_hook is not None or not worker.inline_ok
                or worker.rate_s is None or worker.runs < LEARN_RUNS
                or rid in self._pending or rid in self._cache._d):
            return False
        reset, seed = args.get("reset", True), args.get("seed")
        if type(reset) is not bool or not (seed is None or (type(seed) is int and 0 <= seed < _SEED_END)):
            return False
        x = _ref(args.get("inputs"), 0, msg[2])
        if x is None or worker.rate_s * max(x.size, 1) >= INLINE_S:
            return False
        # The request is valid and runs here (RigWorker.execute without a fault hook; the
        # general path's counters, then the drive). The reply goes out before the timing and the
        # cache entry: they overlap its transport (this loop takes the next message, e.g. a
        # retry of this id, only after both).
        self._stats["requests"] += 1
        self._rig_stats[rig]["requests"] += 1
        self._users[rig]["anonymous"] += 1
        self._stats["inline"] += 1
        args["inputs"] = x
        t0 = _perf_counter()
        try:
            code, frames = "", worker._drive(rid, args)
        except Exception as exc:
            code, frames = worker._failed(rid, P.DRIVE, exc)
        elapsed = _perf_counter() - t0
        if code:   # RigServer._finish's counts
            self._errors[code] += 1
            self._rig_errors[rig][code] += 1
        try:
            _send_frames(self._router, [msg[0], *frames])
        except zmq.ZMQError:  # e.g. HWM reached for a client that does not read
            pass
        worker.note_run(elapsed, x.size)
        self._cache.put(rid, (P.DRIVE, rig), frames)
        return True


def drive_reply(msg: list, rid: str) -> DriveResult | None:
    """The DriveResult of an ok drive reply to ``rid``, or None (not one)."""
    if len(msg) != 3:
        return None
    hf = msg[0]
    if type(hf) is not _Frame or len(hf) > _MAX_HEADER:
        return None
    known = known_reply(hf.bytes, rid)   # the common case: a header packed like reply_header's
    if known is not None:
        o, i = msg[1], msg[2]
        if type(o) is _Frame and type(i) is _Frame and len(o) == known[1] and len(i) == known[3]:
            return DriveResult(_ndarray(known[0], _F8, o), _ndarray(known[2], _F8, i), known[4])
    try:
        head = _unpackb(hf.buffer, ext_hook=_refuse_ext, timestamp=0, max_ext_len=0)
    except Exception:
        return None
    if type(head) is not dict or head.get("id") != rid or head.get("ok") is not True:
        return None
    res = head.get("result")
    if type(res) is not dict or len(res) != 3:
        return None
    t = res.get("instrument_s")
    out, init = _ref(res.get("outputs"), 0, msg[1]), _ref(res.get("initial"), 1, msg[2])
    if out is None or init is None or type(t) not in (int, float):
        return None
    if (out.shape, init.shape) not in _reply_mid:   # the next reply of these shapes takes known_reply
        learn_reply(out.shape, init.shape)
    return DriveResult(out, init, float(t))
