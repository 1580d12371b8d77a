"""``RigServer``: serves rigs on a ZeroMQ ROUTER socket (wire protocol v1).

::

    server = RigServer({"leaky": LeakyRig()}, "tcp://127.0.0.1:*").start()
    print(server.endpoints)      # ['tcp://127.0.0.1:40123']
    ...
    server.close()

Design (one thread owns each socket):

- The *loop thread* (``start()``'s background thread, or the caller of
  ``serve_forever()``) owns the ROUTER socket. It reads every message, checks
  the header (schema, version, op, rig, args, array frames, the drive-size
  limit) and answers ``hello``/``ping``/``lock``/``unlock``/``status`` and every
  malformed request itself. DEALER clients send ``[header, bufs...]``; REQ
  clients prefix an empty delimiter frame, which the reply repeats. A message
  without a header frame is dropped; anything else malformed is answered with
  its code (``id`` nil when the id is unusable).
- Each rig has a *worker thread* (:mod:`bridge._worker`) fed through a queue: it
  checks the rig's lease and the inputs when it executes a request, then calls
  the rig. A rig serves one request at a time; different rigs work concurrently.
  Requests beyond ``queue_size`` waiting for one rig, or beyond ``peer_queue``
  waiting for one peer, are answered ``BUSY``.
- Inline: a small request for an idle, emulated rig whose recent requests took
  well under a millisecond per request of this size runs on the loop thread,
  saving two thread hand-offs (``RigWorker.fast``; ``inline=False`` turns it off).
- Peers (``bridge/PROTOCOL.md``): the caller's CurveZMQ key, else its routing id.
  Replies to ``describe``/``drive`` are kept in a cache keyed by (peer, request
  id) with the whole request they answered: a retry of the same request is
  answered from the cache (or, while the first try still runs, when it
  finishes) and never executed twice; the same id with a different request is
  ``BAD_REQUEST``; another peer's id is another request. Leases belong to
  (peer, client token).
- Shutdown: ``close()``, SIGINT and SIGTERM (under ``serve_forever()`` in the main
  thread) stop reading requests, drop the queued ones, ask each running drive to
  stop (the rig's ``interrupt()`` when it has one: emulators stop between steps;
  a DAQ rig's ``make_safe()`` stops its tasks), wait at most ``shutdown_s`` for the
  workers, then call every rig's ``make_safe()`` and ``close()``.
  :attr:`RigServer.unsafe` lists the rigs that could not be made safe (a failing
  ``make_safe``/``close``, or a drive still running); ``serve_forever()`` then
  raises :class:`bridge.errors.RigError` (``nado rig serve`` exits non-zero).

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

import numpy as np
import zmq

from . import protocol as P
from ._cache import ReplyCache
from ._worker import SAFE_OP, RigWorker, check_description, make_safe
from .auth import KeyAuthenticator, Security, check_binds, secure_server_socket
from .errors import ProtocolError, RigError, RigUnavailable, StationError
from .lease import MAX_LEASE_S, LeaseTable

log = logging.getLogger(__name__)

_NAME = f"bridge@{_socket.gethostname()}"
_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)
_zmq_poll, _getsockopt = zmq.backend.zmq_poll, zmq.backend.Socket.get  # no Poller/Socket wrappers

MAX_DRIVE_ELEMENTS = 1 << 22   # default input elements (B * T * n_in) per drive: 32 MiB of float64
PEER_QUEUE = 16                # default requests one peer may have queued or running
PEER_REPLIES = 16              # default unread replies kept for one connection (ZeroMQ SNDHWM)
MAX_JOINED = 8                 # repeats of one running request that wait for its reply
SHUTDOWN_S = 5.0               # default wait for running drives to stop at shutdown


def same_request(canon: bytes, bufs: list, other_canon: bytes, other_bufs: list) -> bool:
    """Whether two requests are the same: equal header bytes and equal buffer bytes.

    ``canon``: a header frame's bytes (op, rig, args, id, ...); ``bufs``: its buffer frames. The
    server keeps each answered request with its reply, so a retry is told from a different request
    under the same id of the same peer exactly (no digest to collide, nothing to hash per request).
    """
    if canon != other_canon or len(bufs) != len(other_bufs):
        return False
    for a, b in zip(bufs, other_bufs):
        a, b = (np.frombuffer(f.buffer if type(f) is zmq.Frame else f, np.uint8) for f in (a, b))
        if a.shape != b.shape or not np.array_equal(a, b):
            return False
    return True


class RigServer:
    """Serve ``rigs`` (name -> Rig) on ``bind`` (one endpoint or a list).

    ``tcp://127.0.0.1:*`` binds a free port; ``.endpoints`` lists the bound
    addresses. ``context`` defaults to ``zmq.Context.instance()`` (needed for
    ``inproc://``). Cache bounds: ``cache_size`` replies, ``cache_age_s``
    seconds, ``cache_bytes`` bytes. ``queue_size``: requests that may wait per
    rig before ``BUSY``; ``peer_queue``: per peer. ``peer_replies``: unread
    replies kept per connection (more are dropped; the client's retry finds
    them in the cache). ``max_drive_elements``: input elements per drive
    (``BAD_INPUT`` beyond); ``rig_max_drive_elements``: per-rig overrides.
    ``inline=False`` turns off running small requests on the loop thread.
    ``shutdown_s``: how long shutdown waits for running drives to stop.
    Entering a ``with`` block starts the server.
    """

    def __init__(self, rigs: dict[str, Any], bind: str | list[str], *, context: zmq.Context | None = None,
                 name: str = _NAME, cache_size: int = 1024, cache_age_s: float = 600.0,
                 cache_bytes: int = 256 << 20, queue_size: int = 64,
                 max_message_bytes: int = P.MAX_FRAME_BYTES, inline: bool = True,
                 security: Security | None = None, max_lease_s: float = MAX_LEASE_S,
                 heartbeat_s: float = 1.0, max_drive_elements: int = MAX_DRIVE_ELEMENTS,
                 rig_max_drive_elements: dict[str, int] | None = None, peer_queue: int = PEER_QUEUE,
                 peer_replies: int = PEER_REPLIES, shutdown_s: float = SHUTDOWN_S) -> None:
        if not rigs:
            raise StationError("a RigServer needs at least one rig")
        for rname, rig in rigs.items():
            if not isinstance(rname, str) or not rname or len(rname) > P.MAX_NAME_CHARS:
                raise StationError(f"rig names must be non-empty strings, got {rname!r}")
            if not (callable(getattr(rig, "describe", None)) and callable(getattr(rig, "drive", None))):
                raise StationError(f"rig '{rname}' ({type(rig).__name__}) lacks describe() or drive()")
        per_rig = dict(rig_max_drive_elements or {})
        unknown = sorted(set(per_rig) - set(rigs))
        if unknown:
            raise StationError(f"rig_max_drive_elements names rigs {unknown} that are not served here")
        for what, n in [("max_drive_elements", max_drive_elements), ("peer_queue", peer_queue),
                        ("peer_replies", peer_replies), *((f"rigs.{k}.max_drive_elements", v) for k, v in per_rig.items())]:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise StationError(f"{what} must be an int >= 1, got {n!r}")
        self.rigs = dict(rigs)
        self.max_drive_elements = {r: per_rig.get(r, max_drive_elements) for r in rigs}
        self.peer_queue, self.shutdown_s = peer_queue, float(shutdown_s)
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
        self._results_ep = f"inproc://bridge-results-{uuid.uuid4().hex}"
        self._workers = {n: RigWorker(n, r, check_description(n, r.describe()), context=self.context,
                                      results_ep=self._results_ep, lease_check=self._lease_message,
                                      leases=self._leases.leases, endpoint=self._first_endpoint,
                                      max_drive_elements=self.max_drive_elements[n])
                         for n, r in self.rigs.items()}
        self._jobs: dict[str, dict] = {}             # job id -> running request (see _queue)
        self._running: dict[tuple, str] = {}         # (peer, request id) -> job id
        self._peer_jobs: Counter = Counter()         # peer -> requests queued or running
        self._job_count = 0
        self._stats: Counter = Counter()
        self._errors: Counter = Counter()
        self.unsafe: dict[str, str] = {}             # rig -> why it could not be made safe (after close)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._closed = False
        self._wake_r, self._wake_w = _socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._router = self.context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
        self._router.setsockopt(zmq.SNDHWM, int(peer_replies))
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)   # a reply that cannot go raises: counted, dropped
        self._router.setsockopt(zmq.RCVHWM, 4 * int(peer_queue))
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

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "RigServer":
        """Serve in a background thread; returns self."""
        if not self._started:
            self._started = True
            self._thread = threading.Thread(target=self._loop, name="rig-server", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``close()``, SIGINT or SIGTERM (main thread only).

        Raises :class:`RigError` (``RIG_FAULT``) after shutdown when a rig could not be
        made safe (:attr:`unsafe`).
        """
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
        if self.unsafe:
            raise RigError(P.RIG_FAULT, "shut down, but these rigs could not be made safe: "
                           + "; ".join(f"{r}: {why}" for r, why in self.unsafe.items())
                           + "; check them now")

    def _on_signal(self, signum, frame) -> None:
        log.info("signal %s: shutting down", signum)
        self._wake()

    def _wake(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close(self, timeout_s: float | None = None) -> None:
        """Stop serving, make every rig safe and close it, close sockets (linger 0). Idempotent.

        Waits at most ``shutdown_s`` (or ``timeout_s``) for running drives, plus the rigs' own
        ``make_safe``/``close``. See :attr:`unsafe`.
        """
        if self._closed:
            return
        self._closed = True
        if timeout_s is not None:
            self.shutdown_s = float(timeout_s)
        if self._started:
            self._wake()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._done.wait()
        else:
            self._close_sockets()
            self._make_all_safe()

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
                if router in events and not stop.is_set():
                    self._drain(router, self._on_request)
        finally:
            self._shutdown()
            self._done.set()

    def _shutdown(self) -> None:
        """Drop queued requests, stop running drives, make every rig safe, close everything."""
        t0 = time.monotonic()
        for w in self._workers.values():
            dropped = w.drop_queued()
            if dropped:
                log.warning("rig %s: %d queued request(s) dropped at shutdown", w.rig_name, dropped)
            w.jobs.put(None)
        for w in self._workers.values():
            if w.busy or w.is_alive():
                stop = getattr(w.rig, "interrupt", None)
                if callable(stop):
                    try:
                        stop()
                    except Exception:
                        log.exception("rig %s: interrupt() failed", w.rig_name)
        deadline = t0 + self.shutdown_s
        for w in self._workers.values():
            if w.is_alive():
                w.join(max(0.0, deadline - time.monotonic()))
        self._make_all_safe()
        self._close_sockets()
        self._stats["shutdown_s"] = time.monotonic() - t0

    def _make_all_safe(self) -> None:
        for n, rig in self.rigs.items():
            failed = make_safe(n, rig)
            w = self._workers[n]
            if w.is_alive() and w.busy:
                failed.append(f"a drive was still running {self.shutdown_s:g} s after shutdown began")
            if failed:
                self.unsafe[n] = "; ".join(failed)
                log.error("rig %s could not be made safe: %s", n, self.unsafe[n])
            else:
                log.info("rig %s made safe and closed", n)

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
            P.send_frames(self._router, [*envelope, *frames], _NOBLOCK)
        except zmq.ZMQError as exc:  # HWM reached for a client that does not read: dropped
            self._stats["replies_dropped"] += 1
            log.debug("reply dropped: %s", exc)

    def _error(self, envelope: list, rid: str | None, code: str, message: str, rig: str | None = None) -> None:
        self._errors[code] += 1
        if rig is not None:
            self._rig_errors[rig][code] += 1
        self._send(envelope, P.error_frames(rid, code, message))

    def _peer(self, identity: Any, header: Any) -> tuple[Any, str | None]:
        """(peer, CurveZMQ user name or None): who sent a message (see the module docstring)."""
        if self._curve:
            try:
                user = header.get("User-Id")
                return ("key", user), user
            except zmq.ZMQError:  # inproc: no security mechanism, no User-Id
                pass
        ident = identity.bytes
        if len(ident) == P.PEER_ID_BYTES + 5 and ident[0] == 1:   # 0x01 + peer + socket (RigClient's form)
            return ident[1:1 + P.PEER_ID_BYTES], None
        return ident, None

    def _on_request(self, msg: list) -> None:
        self._stats["requests"] += 1
        if len(msg) >= 2 and len(msg[1]) == 0:
            envelope, body = msg[:2], msg[2:]      # REQ client: [identity, b"", header, ...]
        else:
            envelope, body = msg[:1], msg[1:]      # DEALER client: [identity, header, ...]
        if not body:
            self._stats["dropped"] += 1
            return
        try:
            hbytes = body[0].bytes if len(body[0]) <= P.MAX_HEADER_BYTES else body[0].buffer   # no big copies
            head = P.unpack_header(hbytes)
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
        peer, user = self._peer(envelope[0], body[0])
        args = head.get("args", {})
        canon = b""
        if op in P.CACHED_OPS:
            canon = hbytes   # the whole header: a retry resends it unchanged
            if self._repeat(envelope, (peer, rid), canon, body[1:], rig):
                return
        if op in P.RIG_OPS or (op == P.STATUS and rig is not None):
            if not isinstance(rig, str) or rig not in self._workers:
                return self._error(envelope, rid, P.UNKNOWN_RIG,
                                   f"no rig named {rig!r:.80} here; this server serves {sorted(self._workers)}")
            self._rig_stats[rig]["requests"] += 1
        if not isinstance(args, dict):
            return self._error(envelope, rid, P.BAD_REQUEST, f"'args' must be a map, got {type(args).__name__}", rig)
        try:
            args = P.resolve(args, body[1:])
            P.check_args(op, args, self._leases.max_lease_s)
        except ProtocolError as exc:
            return self._error(envelope, rid, exc.code, exc.message, rig if op in P.RIG_OPS else None)
        if op == P.DRIVE and args["inputs"].size > self.max_drive_elements[rig]:
            x = args["inputs"]
            return self._error(envelope, rid, P.BAD_INPUT,
                               f"inputs {list(x.shape)} hold {x.size} elements, above this rig's limit "
                               f"max_drive_elements = {self.max_drive_elements[rig]}; split the drive into "
                               "smaller ones", rig)
        self._dispatch(envelope, rid, op, rig, args, (peer, client), user, canon, body[1:])

    def _repeat(self, envelope: list, key: tuple, canon: bytes, bufs: list, rig: Any) -> bool:
        """Answer a repeated (peer, id) from the cache, or join it to the running request.

        The same id with a different request (op, rig, args or array bytes) is ``BAD_REQUEST``.
        """
        jid = self._running.get(key)
        if jid is not None:
            job = self._jobs[jid]
            if not same_request(canon, bufs, job["canon"], job["bufs"]):
                self._error(envelope, key[1], P.BAD_REQUEST, f"request id {key[1]!r} is in use by a different "
                            "request of yours; use a fresh id per request")
            elif len(job["envelopes"]) > MAX_JOINED:
                self._error(envelope, key[1], P.BUSY, f"request id {key[1]!r} is running and already has "
                            f"{MAX_JOINED} repeats waiting for its reply; wait for it")
            else:
                job["envelopes"].append(envelope)
                self._stats["joined"] += 1
            return True
        hit = self._cache.get(key)
        if hit is None:
            return False
        (op, hit_rig, first_canon, first_bufs), frames = hit
        if not same_request(canon, bufs, first_canon, first_bufs):
            self._error(envelope, key[1], P.BAD_REQUEST, f"request id {key[1]!r} was already used by you for a "
                        f"different request ({op} on rig {hit_rig!r}); use a fresh id per request")
        else:
            self._stats["cache_hits"] += 1
            self._rig_stats[hit_rig]["cache_hits"] += 1
            self._send(envelope, frames)
        return True

    def _dispatch(self, envelope: list, rid: str, op: str, rig: str | None, args: dict, owner: tuple,
                  user: str | None, canon: bytes, bufs: list) -> None:
        if op == P.HELLO:
            result = {"protocol": P.VERSION, "server": self.name, "rigs": sorted(self._workers)}
            return self._send(envelope, P.encode(P.reply_ok(rid, result)))
        if op == P.PING:
            return self._send(envelope, P.encode(P.reply_ok(rid, {"time_s": time.time()})))
        if op == P.STATUS:
            st = self.status()
            if rig is not None:
                st = {**st, "rigs": {rig: st["rigs"][rig]}}
            return self._send(envelope, P.encode(P.reply_ok(rid, st)))
        if op in (P.LOCK, P.UNLOCK):
            return self._lease_op(envelope, rid, op, rig, args, owner, user)
        if op == P.DRIVE:
            if self._leases.leases and (blocked := self._lease_message(rig, owner)) is not None:
                # early; checked again when the drive runs
                return self._error(envelope, rid, P.BUSY, blocked, rig)
            name = user or "anonymous"
            self._users[rig][name] += 1
            if self._curve and log.isEnabledFor(logging.INFO):
                log.info("drive %s on rig %s by %s", rid, rig, name)
        worker = self._workers[rig]
        request = {"op": op, "rig": rig, "envelopes": [envelope], "canon": canon, "bufs": bufs,
                   "key": (owner[0], rid), "peer": owner[0]}
        if self.inline and worker.waiting == 0 and worker.fast(args):
            # an idle rig whose requests of this size take well under a millisecond is driven on
            # this thread, saving two thread hand-offs (see RigWorker.fast)
            self._stats["inline"] += 1
            code, frames, fault = worker.execute(rid, op, args, owner)
            return self._finish(request, code, frames, fault)
        if worker.waiting >= self.queue_size:
            return self._error(envelope, rid, P.BUSY, f"rig '{rig}' has {worker.waiting} requests waiting; "
                                                      "retry later with a fresh id", rig)
        if self._peer_jobs[owner[0]] >= self.peer_queue:
            return self._error(envelope, rid, P.BUSY, f"you have {self.peer_queue} requests queued or running "
                                                      "(the per-peer limit); wait for their replies", rig)
        self._queue(worker, rid, op, args, owner, request)

    def _queue(self, worker: RigWorker, rid: str, op: str, args: dict, owner: tuple, request: dict) -> None:
        self._job_count += 1
        jid = f"{self._job_count:x}"
        worker.waiting += 1
        self._peer_jobs[request["peer"]] += 1
        self._jobs[jid] = request
        if op in P.CACHED_OPS:
            self._running[request["key"]] = jid
        worker.jobs.put((jid, rid, op, args, owner))

    def _on_result(self, msg: list) -> None:
        jid, code, fault, frames = msg[0].bytes.decode(), msg[1].bytes.decode(), msg[2].bytes.decode(), msg[3:]
        request = self._jobs.pop(jid, None)
        if request is None:
            return
        self._workers[request["rig"]].waiting -= 1
        peer = request["peer"]
        self._peer_jobs[peer] -= 1
        if self._peer_jobs[peer] <= 0:
            del self._peer_jobs[peer]
        self._running.pop(request["key"], None)
        if request["op"] != SAFE_OP:
            self._finish(request, code, frames, fault)

    def _finish(self, request: dict, code: str, frames: list, fault: str = "") -> None:
        rig = request["rig"]
        if code:
            self._errors[code] += 1
            self._rig_errors[rig][code] += 1
        if fault:  # injected by the rig's bridge_fault_hook (emulator/faults.py); the cache keeps the truth
            self._stats[f"fault_{fault}"] += 1
        if fault != "drop":
            sent = corrupt(frames) if fault else frames
            for envelope in request["envelopes"]:
                self._send(envelope, sent)
        if code != P.BUSY:   # a BUSY answer (lease) is not the request's result: a retry runs it
            canon, bufs = request["canon"], request["bufs"]
            self._cache.put(request["key"], (request["op"], rig, canon, bufs), frames,
                            extra_bytes=len(canon) + sum(len(b) for b in bufs))

    # ---- leases and status -------------------------------------------------------------------
    def _first_endpoint(self) -> str | None:
        eps = getattr(self, "endpoints", None)
        return eps[0] if eps else None

    def _lease_message(self, rig: str, owner: tuple) -> str | None:
        """Why ``owner`` may not drive ``rig`` now (a lease held by another), or None."""
        lease = self._leases.blocking(rig, owner)
        if lease is None:
            return None
        return (f"rig '{rig}' is locked by {lease.holder} for {self._leases.left_s(lease):.1f} s more; "
                "wait or ask them to unlock it")

    def _lease_op(self, envelope: list, rid: str, op: str, rig: str, args: dict, owner: tuple,
                  user: str | None) -> None:
        if op == P.LOCK:
            holder = user or args.get("holder") or "anonymous"
            if user and args.get("holder"):
                holder = f"{user} ({args['holder']})"
            ok, lease = self._leases.acquire(rig, owner, holder, float(args["lease_s"]))
        else:
            ok, lease = self._leases.release(rig, owner)
            if lease is None:
                return self._send(envelope, P.encode(P.reply_ok(rid, {"released": ok})))
        if not ok:
            return self._error(envelope, rid, P.BUSY, f"rig '{rig}' is locked by {lease.holder} for "
                               f"{self._leases.left_s(lease):.1f} s more; wait or ask them to unlock it", rig)
        left = self._leases.left_s(lease)
        log.info("rig %s locked by %s for %.3g s", rig, lease.holder, left)
        self._send(envelope, P.encode(P.reply_ok(rid, {"holder": lease.holder, "lease_left_s": left})))

    def _expire_leases(self) -> None:
        """Free leases that ran out and make their rigs safe (on the rig's worker, in order)."""
        for rig, lease in self._leases.expire():
            log.warning("lease of rig %s held by %s ran out; the rig is free and made safe", rig, lease.holder)
            self._stats["leases_expired"] += 1
            request = {"op": SAFE_OP, "rig": rig, "envelopes": [], "canon": b"", "bufs": [],
                       "key": (None, None), "peer": None}
            self._queue(self._workers[rig], SAFE_OP, SAFE_OP, {}, (None, None), request)

    def status(self) -> dict[str, Any]:
        """Counters (also the ``status`` op's result).

        Server-wide: ``requests``, ``drives``, ``cache_hits``, ``errors`` (by code),
        ``cached`` replies, ``refused`` clients (CURVE). Per rig (``rigs.NAME``):
        ``holder`` (None when free) and ``lease_left_s``, ``requests`` served,
        ``drives`` executed, ``cache_hits``, ``errors`` by code, ``waiting``,
        ``users`` (drives by caller: CURVE User-Id, else ``"anonymous"``),
        ``max_drive_elements``.
        """
        rigs = {}
        for n, w in self._workers.items():
            lease = self._leases.leases.get(n)
            left = self._leases.left_s(lease) if lease is not None else 0.0
            live = left > 0
            st = self._rig_stats[n]
            rigs[n] = {"holder": lease.holder if live else None, "lease_left_s": left if live else 0.0,
                       "requests": st["requests"], "drives": w.drives, "cache_hits": st["cache_hits"],
                       "errors": dict(self._rig_errors[n]), "waiting": w.waiting,
                       "users": dict(self._users[n]), "max_drive_elements": self.max_drive_elements[n]}
        return {"requests": 0, "cache_hits": 0, **self._stats,
                "drives": sum(w.drives for w in self._workers.values()),
                "errors": dict(self._errors), "cached": len(self._cache), "cached_bytes": self._cache.nbytes,
                "refused": self._auth.refusals if self._auth is not None else 0, "rigs": rigs}


def corrupt(frames: list) -> list:
    """A damaged copy of reply frames that any client's decode refuses (header cut short)."""
    head = bytes(frames[0])
    return [head[: max(1, len(head) // 2)], *frames[1:]]
