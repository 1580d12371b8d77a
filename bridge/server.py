"""``RigServer``: serves rigs on a ZeroMQ ROUTER socket (wire protocol v1).

::

    server = RigServer({"leaky": LeakyRig()}, "tcp://127.0.0.1:*").start()
    print(server.endpoints)      # ['tcp://127.0.0.1:40123']
    ...
    server.close()

Design (one thread owns each socket):

- The *loop thread* (``start()``'s background thread, or the caller of
  ``serve_forever()``) owns the ROUTER socket. It reads every message, checks
  the header (schema, version, op, rig, args, array frames) and answers
  ``hello``/``ping`` and every malformed request itself. DEALER clients send
  ``[header, bufs...]``; REQ clients prefix an empty delimiter frame, which the
  reply repeats. A message without a header frame is dropped; anything else
  malformed is answered ``BAD_REQUEST`` (``id`` nil when the id is unusable).
- Each rig has a *worker thread* fed through a queue: it validates inputs
  against the rig's description (``bridge.rig.check_inputs``, with a fast path
  for valid float64 arrays: ``bridge.worker.validate_inputs``) and only then
  calls the rig, so bad input never reaches the device. A rig serves one request
  at a time; different rigs work concurrently. Requests beyond ``queue_size``
  waiting for one rig are answered ``BUSY``. Workers send encoded replies back
  over an inproc PUSH socket of their own.
- Inline: a small request for an idle, emulated rig whose recent requests took
  well under a millisecond per request of this size runs on the loop thread,
  saving two thread hand-offs (``RigWorker.fast``; ``inline=False`` turns it
  off); slow and real rigs always use their worker. The common valid small drive
  is parsed in one pass (``bridge/fastpath.py``), everything else as above.
- Replies to rig ops are kept in a cache keyed by request id, bounded by count,
  age and bytes: a retried id is answered from the cache (or, while the first
  try still runs, when it finishes) and never executed twice.
- ``close()``, SIGINT and SIGTERM (under ``serve_forever()`` in the main thread)
  stop the loop, let each worker finish its current request, call the rigs'
  ``make_safe()`` and ``close()`` when they have them, and close every socket
  with linger 0.

``status()`` returns counters (requests, drives executed, cache hits, errors by
code, per rig). New ops: a branch in ``protocol.check_args`` / ``_dispatch``.
"""
from __future__ import annotations

import logging
import signal
import socket as _socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

import zmq

from . import protocol as P
from .auth import KeyAuthenticator, Security, check_binds, secure_server_socket
from .errors import ProtocolError, RigUnavailable, StationError
from .fastpath import FastDrive
from .lease import MAX_LEASE_S, LeaseOps, LeaseTable
from .worker import SAFE_OP, ReplyCache, RigWorker, check_description, make_safe

log = logging.getLogger(__name__)

_NAME = f"bridge@{_socket.gethostname()}"
_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)
_zmq_poll, _getsockopt = zmq.backend.zmq_poll, zmq.backend.Socket.get  # no Poller/Socket wrappers


class RigServer(LeaseOps, FastDrive):
    """Serve ``rigs`` (name -> Rig) on ``bind`` (one endpoint or a list).

    ``tcp://127.0.0.1:*`` binds a free port; ``.endpoints`` lists the bound
    addresses. ``context`` defaults to ``zmq.Context.instance()`` (needed for
    ``inproc://``). Cache bounds: ``cache_size`` replies, ``cache_age_s``
    seconds, ``cache_bytes`` bytes. ``queue_size``: requests that may wait per
    rig before ``BUSY``. ``inline=False`` turns off the fast path (small
    requests to idle, fast, emulated rigs run on the loop thread; see
    ``RigWorker.fast``). Entering a ``with`` block starts the server.
    """

    def __init__(self, rigs: dict[str, Any], bind: str | list[str], *, context: zmq.Context | None = None,
                 name: str = _NAME, cache_size: int = 1024, cache_age_s: float = 600.0,
                 cache_bytes: int = 256 << 20, queue_size: int = 64,
                 max_message_bytes: int = P.MAX_FRAME_BYTES, inline: bool = True,
                 security: Security | None = None, max_lease_s: float = MAX_LEASE_S,
                 heartbeat_s: float = 1.0) -> None:
        if not rigs:
            raise StationError("a RigServer needs at least one rig")
        for rname, rig in rigs.items():
            if not isinstance(rname, str) or not rname or len(rname) > P.MAX_NAME_CHARS:
                raise StationError(f"rig names must be non-empty strings, got {rname!r}")
            if not (callable(getattr(rig, "describe", None)) and callable(getattr(rig, "drive", None))):
                raise StationError(f"rig '{rname}' ({type(rig).__name__}) lacks describe() or drive()")
        self.rigs = dict(rigs)
        binds = [bind] if isinstance(bind, str) else list(bind)
        self.security = security or Security()
        check_binds(binds, self.security)
        self._curve = self.security.curve
        # A CURVE server needs its own ZAP handler, one per context: it gets a private context.
        self._own_context = self._curve and context is None
        self.context = zmq.Context() if self._own_context else (context or zmq.Context.instance())
        self._auth: KeyAuthenticator | None = None
        self._leases = LeaseTable(max_lease_s)
        self._rig_stats: dict[str, Counter] = {n: Counter() for n in self.rigs}
        self._rig_errors: dict[str, Counter] = {n: Counter() for n in self.rigs}
        self._users: dict[str, Counter] = {n: Counter() for n in self.rigs}
        self.name, self.queue_size, self.inline = name, queue_size, inline
        self._cache = ReplyCache(cache_size, cache_age_s, cache_bytes)
        self._workers = {n: RigWorker(self, n, r, check_description(n, r.describe())) for n, r in self.rigs.items()}
        self._pending: dict[str, dict] = {}
        self._stats: Counter = Counter()
        self._errors: Counter = Counter()
        self._results_ep = f"inproc://bridge-results-{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._closed = False
        self._wake_r, self._wake_w = _socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._router = self.context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
        if heartbeat_s > 0:  # ZMTP heartbeats: dead clients' connections are closed
            self._router.setsockopt(zmq.HEARTBEAT_IVL, int(heartbeat_s * 1000))
            self._router.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(5 * heartbeat_s * 1000))
        self._results = self.context.socket(zmq.PULL)
        self._results.setsockopt(zmq.LINGER, 0)
        self.endpoints: list[str] = []
        try:
            if self._curve:
                self._auth = KeyAuthenticator(self.context, self.security.clients).start_for()
                secure_server_socket(self._router, self.security)
            self._results.bind(self._results_ep)
            for ep in binds:
                self._router.bind(ep)
                self.endpoints.append(self._router.getsockopt_string(zmq.LAST_ENDPOINT))
        except BaseException as exc:
            self._close_sockets()
            if not isinstance(exc, zmq.ZMQError):
                raise
            raise RigUnavailable(f"cannot bind {bind}: {exc}; choose another endpoint or stop the "
                                 "process that holds it") from None

    def start(self) -> "RigServer":  # ---- lifecycle ----
        """Serve in a background thread; returns self."""
        if not self._started:
            self._started = True
            self._thread = threading.Thread(target=self._loop, name="rig-server", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``close()``, SIGINT or SIGTERM (main thread only)."""
        if self._started:
            raise RuntimeError("this RigServer is already serving")
        self._started = True
        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, self._on_signal)
        try:
            self._loop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        log.info("signal %s: shutting down", signum)
        self._wake()

    def _wake(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop serving, make rigs safe, close sockets (linger 0). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._wake()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout_s)
        else:
            self._close_sockets()
            for n, r in self.rigs.items():
                make_safe(n, r)

    def __enter__(self) -> "RigServer":  # starts serving
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _loop(self) -> None:  # ---- the loop thread ----
        for w in self._workers.values():
            w.start()
        router, results, leases, stop = self._router, self._results, self._leases.leases, self._stop
        items = [(router, _POLLIN), (results, _POLLIN), (self._wake_r.fileno(), _POLLIN)]
        try:
            while not stop.is_set():
                events = [s for s, _ in _zmq_poll(items, 250 if leases else 500)]
                if leases:
                    self._expire_leases()
                if results in events:
                    self._drain(results, self._on_result)
                if router in events:
                    self._drain(router, self._on_request)
        finally:
            for w in self._workers.values():
                w.jobs.put(None)
            deadline = time.monotonic() + 10.0
            for w in self._workers.values():
                w.join(max(0.0, deadline - time.monotonic()))
            self._close_sockets()

    def _drain(self, sock: zmq.Socket, handle) -> None:
        """Handle the messages waiting on ``sock`` (at most 256; the loop's poll tells when more come)."""
        for _ in range(256):
            try:
                msg = P.recv_frames(sock, _NOBLOCK)
            except zmq.Again:
                return
            try:
                handle(msg)
            except Exception:  # never let one message stop the server
                log.exception("internal error while handling a message")
                self._errors[P.INTERNAL] += 1
            if not _getsockopt(sock, _EVENTS) & _POLLIN:   # after the reply: overlaps its transport
                return

    def _close_sockets(self) -> None:
        for s in (self._router, self._results):
            s.close(linger=0)
        self._wake_r.close()
        self._wake_w.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_context:
            if any(w.is_alive() for w in self._workers.values()):
                # a rig still busy past the shutdown deadline holds a socket: term() would block
                log.warning("a rig worker is still running; leaving the server's context open")
            else:
                self.context.term()

    # ---- requests ------------------------------------------------------------------------
    def _send(self, envelope: list, frames: list) -> None:
        try:
            P.send_frames(self._router, [*envelope, *frames])
        except zmq.ZMQError as exc:  # e.g. HWM reached for a client that does not read
            log.debug("reply dropped: %s", exc)

    def _error(self, envelope: list, rid: str | None, code: str, message: str, rig: str | None = None) -> None:
        self._errors[code] += 1
        if rig is not None:
            self._rig_errors[rig][code] += 1
        self._send(envelope, P.error_frames(rid, code, message))

    def _on_request(self, msg: list) -> None:
        if len(msg) == 3 and self._fast_drive(msg):  # the common small drive (bridge/fastpath.py; counts it)
            return
        self._stats["requests"] += 1
        if len(msg) >= 2 and len(msg[1]) == 0:
            envelope, body = msg[:2], msg[2:]      # REQ client: [identity, b"", header, ...]
        else:
            envelope, body = msg[:1], msg[1:]      # DEALER client: [identity, header, ...]
        if not body:
            self._stats["dropped"] += 1
            return
        try:
            head = P.unpack_header(body[0].buffer)
        except ProtocolError as exc:
            return self._error(envelope, None, exc.code, exc.message)
        rid = head.get("id")
        if not isinstance(rid, str) or not 0 < len(rid) <= P.MAX_ID_CHARS:
            return self._error(envelope, None, P.BAD_REQUEST,
                               f"'id' must be a string of 1..{P.MAX_ID_CHARS} characters, got {rid!r:.80}")
        v = head.get("v")
        if type(v) is not int:
            return self._error(envelope, rid, P.BAD_REQUEST, f"'v' must be the protocol version (int 1), got {v!r:.80}")
        if v != P.VERSION:
            return self._error(envelope, rid, P.VERSION_ERR,
                               f"this server speaks protocol {P.VERSION}, the request uses {v}; upgrade the older side")
        op = head.get("op")
        if not isinstance(op, str):
            return self._error(envelope, rid, P.BAD_REQUEST, f"'op' must be a string, got {op!r:.80}")
        if op not in P.OPS:
            return self._error(envelope, rid, P.UNKNOWN_OP, f"unknown op {op!r:.80}; this server knows {list(P.OPS)}")
        client = head.get(P.CLIENT_KEY)
        if client is not None and not (type(client) is str and 0 < len(client) <= P.MAX_ID_CHARS):
            return self._error(envelope, rid, P.BAD_REQUEST,
                               f"'client' must be a string of 1..{P.MAX_ID_CHARS} characters, got {client!r:.80}")
        rig = head.get("rig")
        if op in P.CACHED_OPS and self._repeat(envelope, rid, op, rig):
            return
        if op in P.RIG_OPS or (op == P.STATUS and rig is not None):
            if not isinstance(rig, str) or rig not in self._workers:
                return self._error(envelope, rid, P.UNKNOWN_RIG,
                                   f"no rig named {rig!r:.80} here; this server serves {sorted(self._workers)}")
            self._rig_stats[rig]["requests"] += 1
        args = head.get("args", {})
        if not isinstance(args, dict):
            return self._error(envelope, rid, P.BAD_REQUEST, f"'args' must be a map, got {type(args).__name__}", rig)
        try:
            args = P.resolve(args, body[1:])
            P.check_args(op, args, self._leases.max_lease_s)
        except ProtocolError as exc:
            return self._error(envelope, rid, exc.code, exc.message, rig if op in P.RIG_OPS else None)
        user = None
        if self._curve:
            try:
                user = body[0].get("User-Id")
            except zmq.ZMQError:  # inproc: no security mechanism, no User-Id
                user = None
        self._dispatch(envelope, rid, op, rig, args, (user, client))

    def _repeat(self, envelope: list, rid: str, op: str, rig: Any) -> bool:
        """Answer a repeated id from the cache, or join it to the running request."""
        running = self._pending.get(rid)
        hit = self._cache.get(rid) if running is None else ((running["op"], running["rig"]), None)
        if hit is None:
            return False
        key, frames = hit
        if key != (op, rig):
            self._error(envelope, rid, P.BAD_REQUEST,
                        f"request id {rid!r} was already used for {key[0]} on rig {key[1]!r}; use a fresh id per request")
        elif running is not None:
            running["envelopes"].append(envelope)
            self._stats["joined"] += 1
        else:
            self._stats["cache_hits"] += 1
            self._rig_stats[rig]["cache_hits"] += 1
            self._send(envelope, frames)
        return True

    def _dispatch(self, envelope: list, rid: str, op: str, rig: str | None, args: dict, owner: tuple) -> None:
        if op == P.HELLO:
            result = {"protocol": P.VERSION, "server": self.name, "rigs": sorted(self._workers)}
            return self._send(envelope, P.encode(P.reply_ok(rid, result)))
        if op == P.PING:
            return self._send(envelope, P.encode(P.reply_ok(rid, {"time_s": time.time()})))
        if op in (P.LOCK, P.UNLOCK, P.STATUS):
            return self._lease_op(envelope, rid, op, rig, args, owner)
        if op == P.DRIVE:
            lease = self._leases.leases.get(rig)
            if lease is not None:
                if lease.expires <= time.monotonic():
                    self._expire_leases()
                elif lease.owner != owner:
                    return self._error(envelope, rid, P.BUSY, f"rig '{rig}' is locked by {lease.holder} for "
                                       f"{lease.left_s():.1f} s more; wait or ask them to unlock it", rig)
            user = owner[0] or "anonymous"
            self._users[rig][user] += 1
            if self._curve and log.isEnabledFor(logging.INFO):
                log.info("drive %s on rig %s by %s", rid, rig, user)
        worker = self._workers[rig]
        if self.inline and worker.waiting == 0 and worker.fast(args):
            # Fast path: an idle rig whose drives of this size take well under a millisecond is
            # driven on this thread, saving two thread hand-offs (see RigWorker.fast).
            self._stats["inline"] += 1
            code, frames, fault = worker.execute(rid, op, args)
            return self._finish(rid, op, rig, code, frames, [envelope], fault)
        if worker.waiting >= self.queue_size:
            return self._error(envelope, rid, P.BUSY, f"rig '{rig}' has {worker.waiting} requests waiting; "
                                                      "retry later with a fresh id", rig)
        worker.waiting += 1
        self._pending[rid] = {"op": op, "rig": rig, "envelopes": [envelope]}
        worker.jobs.put((rid, op, args))

    def _on_result(self, msg: list) -> None:
        rid, code, fault, frames = msg[0].bytes.decode(), msg[1].bytes.decode(), msg[2].bytes.decode(), msg[3:]
        entry = self._pending.pop(rid, None)
        if entry is None:
            return
        self._workers[entry["rig"]].waiting -= 1
        if entry["op"] != SAFE_OP:
            self._finish(rid, entry["op"], entry["rig"], code, frames, entry["envelopes"], fault)

    def _finish(self, rid: str, op: str, rig: str, code: str, frames: list, envelopes: list, fault: str = "") -> None:
        if code:
            self._errors[code] += 1
            self._rig_errors[rig][code] += 1
        if fault:  # injected by the rig's bridge_fault_hook (emulator/faults.py); the cache keeps the truth
            self._stats[f"fault_{fault}"] += 1
        if fault != "drop":
            sent = corrupt(frames) if fault else frames
            for envelope in envelopes:
                self._send(envelope, sent)
        self._cache.put(rid, (op, rig), frames)   # after the send: overlaps the reply's transport


def corrupt(frames: list) -> list:
    """A damaged copy of reply frames that any client's decode refuses (header cut short)."""
    head = bytes(frames[0])
    return [head[: max(1, len(head) // 2)], *frames[1:]]
