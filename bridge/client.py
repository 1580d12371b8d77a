"""``RigClient``: drives rigs served by a :class:`bridge.server.RigServer`.

::

    with RigClient("tcp://127.0.0.1:5555", "nra", timeout_s=10.0, retries=3) as rig:
        rig.describe()                       # dict (bridge/rig.py)
        res = rig.drive(u, reset=True, seed=1)   # u: (B, T, n_in) -> DriveResult

A DEALER socket with a fresh request id (uuid4 hex) per request. When no reply
comes within ``timeout_s`` seconds the client closes its socket (linger 0),
opens a new one and sends the *same* request again, ``retries`` times (the
zguide's lazy pirate): every op is safe to retry because the server answers a
repeated id from its reply cache and never executes a drive twice. Errors:

- an error reply raises :class:`RigError` (``code``, ``message``), as
  :class:`BadInput` / :class:`OutOfRange` for those codes, :class:`ProtocolError`
  for ``BAD_REQUEST``/``VERSION``, :class:`RigUnavailable` for ``UNKNOWN_RIG``;
- no reply after every try raises :class:`RigTimeout`, or :class:`RigUnavailable`
  when a ``tcp://``/``ipc://`` connection was never established.

Retries: between tries the client waits ``backoff_s``, doubling up to 2 s. A
try also ends early when the connection is gone for ``dead_after_s`` seconds
(the server process died or its host vanished: ZeroMQ heartbeats,
``HEARTBEAT_IVL``/``HEARTBEAT_TIMEOUT``, close silent connections), and a reply
that cannot be decoded (damaged in transit) counts as lost: both are retried
with the same id. So a dead server is reported (``RigUnavailable``) within
about ``(retries + 1) * (dead_after_s + 2)`` seconds, however long ``timeout_s``.
A server that refuses this client's key fails at once with ``RigUnavailable``.

Security: ``curve_keys`` (a folder, or ``(client_public, client_secret,
server_public)``; default: the folder in ``$NADO_KEYS``) makes the connection
CurveZMQ (see :mod:`bridge.auth`). Exclusive access: ``lock(lease_s)`` /
``unlock()``, or ``with client.lease(lease_s):`` which renews the lease from a
heartbeat thread (its own socket) until the block ends. ``status()`` returns the
server's counters.

A client is not thread-safe (it owns a ZeroMQ socket): use one per thread.
Arrays in results view the reply's memory (writable, no copy).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import uuid
from typing import Any

import numpy as np
import zmq

from . import protocol as P
from .auth import KEYS_ENV, client_keys, secure_client_socket
from .errors import BadInput, OutOfRange, ProtocolError, RigError, RigTimeout, RigUnavailable
from .rig import DriveResult, check_seed

log = logging.getLogger(__name__)

_UP = zmq.EVENT_HANDSHAKE_SUCCEEDED   # a ZMTP handshake needs the server process (a TCP connect does not)
_AUTH_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
_EVENTS = _UP | zmq.EVENT_DISCONNECTED | _AUTH_FAILED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
# A CurveZMQ server drops a plain (NULL) client's handshake; when it closes before the client has
# read its greeting, the client sees only HANDSHAKE_FAILED_NO_DETAIL (a reset), again at every
# reconnect (every 0.1 s). This many in a row, none succeeding, means the server wants keys.
_PLAIN_DROPS = 3
_F8 = np.dtype("<f8")
_SLICE_MS = 500   # a waiting client looks at its connection this often


class RigClient:
    """Client of one server (``endpoint``) and, by default, one of its rigs (``rig``).

    ``rig=None`` picks the server's only rig, or needs ``rig=`` on each call.
    ``timeout_s``: seconds to wait for each try; ``retries``: tries after the
    first; ``backoff_s``: first pause between tries (doubles, at most 2 s);
    ``dead_after_s``: a try ends when the connection has been down this long;
    ``curve_keys``: see the module docstring; ``name``: shown to others as the
    lease holder (default user@host). ``context`` defaults to
    ``zmq.Context.instance()``.
    """

    def __init__(self, endpoint: str, rig: str | None = None, *, timeout_s: float = 10.0,
                 retries: int = 3, context: zmq.Context | None = None, backoff_s: float = 0.05,
                 dead_after_s: float = 3.0, curve_keys: Any = None, name: str | None = None,
                 session: str | None = None, peer_id: bytes | None = None) -> None:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise RigUnavailable(f"endpoint must look like tcp://HOST:PORT, ipc://PATH or inproc://NAME, got {endpoint!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if int(retries) < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.endpoint, self.rig = endpoint, rig
        self.timeout_s, self.retries = float(timeout_s), int(retries)
        self.context = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._connected = endpoint.startswith("inproc://")  # inproc has no connection events
        self._ever_connected = self._connected
        self._dropped_handshakes = 0   # in a row on this socket (see _PLAIN_DROPS)
        self._prefix = uuid.uuid4().hex[:24]   # request id = random prefix + counter: unique, cheap
        self._count = itertools.count()
        self.session = session or uuid.uuid4().hex   # lease owner token (header key "client")
        # This client's peer name on plain connections: every socket it opens (retries, the lease
        # heartbeat) has the routing id 0x01 + peer_id + 4 random bytes (bridge/PROTOCOL.md, "Peers").
        self.peer_id = peer_id or os.urandom(P.PEER_ID_BYTES)
        if len(self.peer_id) != P.PEER_ID_BYTES:
            raise ValueError(f"peer_id must be {P.PEER_ID_BYTES} bytes, got {len(self.peer_id)}")
        self.backoff_s, self.dead_after_s = float(backoff_s), float(dead_after_s)
        if curve_keys is None and os.environ.get(KEYS_ENV) and not endpoint.startswith("inproc://"):
            curve_keys = os.environ[KEYS_ENV]
        self.curve_keys = client_keys(curve_keys) if curve_keys is not None else None
        self.name = name or f"{os.environ.get('USER', 'user')}@{_hostname()}"
        self._down_since: float | None = None
        self._lease_thread: Heartbeat | None = None   # while a lease() block runs

    # ---- ops -----------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        """``{protocol, server, rigs}``."""
        return self.request(P.HELLO)

    def ping(self) -> float:
        """Round trip time in seconds."""
        t0 = time.perf_counter()
        self.request(P.PING)
        return time.perf_counter() - t0

    def describe(self, *, rig: str | None = None) -> dict[str, Any]:
        """The rig's description (see ``bridge/rig.py``)."""
        return self.request(P.DESCRIBE, rig=self._rig(rig))

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None,
              rig: str | None = None) -> DriveResult:
        """Drive the rig with ``inputs`` ``(B, T, n_in)``; returns outputs ``(B, T, n_out)``."""
        arr = inputs   # the common case (C-contiguous float64) travels as it is
        if not (type(arr) is np.ndarray and arr.dtype is _F8 and arr.flags.c_contiguous):
            if (arr := np.asarray(inputs)).dtype.kind not in "fiu":
                raise BadInput(f"inputs must be numeric, got dtype {arr.dtype}")
            arr = P.wire_array(arr)
        rig = rig or self.rig or self._rig(None)
        rid = self._new_id()
        head = P.request(P.DRIVE, rid, rig, {"inputs": P.array_ref(0, arr), "reset": bool(reset),
                                             "seed": check_seed(seed)})
        head[P.CLIENT_KEY] = self.session
        res = self._roundtrip([P.pack_header(head), arr], rid, P.DRIVE, rig)
        out, init, t = res.get("outputs"), res.get("initial"), res.get("instrument_s")
        if not (isinstance(out, np.ndarray) and isinstance(init, np.ndarray) and isinstance(t, (int, float))):
            raise ProtocolError(P.BAD_REQUEST, f"malformed drive reply from {self.endpoint}: {sorted(res)}")
        return DriveResult(outputs=out, initial=init, instrument_s=float(t))

    def _rig(self, rig: str | None) -> str:
        rig = rig or self.rig
        if rig is None:
            rigs = self.hello()["rigs"]
            if len(rigs) != 1:
                raise RigUnavailable(f"{self.endpoint} serves {len(rigs)} rigs {rigs}: "
                                     "name one with RigClient(endpoint, rig=NAME)")
            rig = self.rig = rigs[0]
        return rig

    # ---- transport -----------------------------------------------------------------------
    def request(self, op: str, *, rig: str | None = None, args: dict | None = None) -> dict[str, Any]:
        """Send one request (retrying with the same id); return its ``result`` map."""
        rid = self._new_id()
        head = P.request(op, rid, rig, args)
        head[P.CLIENT_KEY] = self.session
        return self._roundtrip(P.encode(head), rid, op, rig)

    # ---- exclusive access ------------------------------------------------------------------
    def lock(self, lease_s: float = 30.0, *, rig: str | None = None) -> dict[str, Any]:
        """Lease the rig for ``lease_s`` seconds (renew by calling again); ``{holder, lease_left_s}``.

        Raises :class:`RigError` with code ``BUSY`` (holder and time left in the
        message) when another client holds it.
        """
        return self.request(P.LOCK, rig=self._rig(rig), args={"lease_s": float(lease_s), "holder": self.name})

    def unlock(self, *, rig: str | None = None) -> bool:
        """Give the lease back; False when this client held none."""
        return bool(self.request(P.UNLOCK, rig=self._rig(rig)).get("released"))

    def status(self, *, rig: str | None = None) -> dict[str, Any]:
        """The server's counters (``RigServer.status()``), optionally for one rig."""
        return self.request(P.STATUS, rig=rig)

    @contextlib.contextmanager
    def lease(self, lease_s: float = 10.0, *, rig: str | None = None, renew_s: float | None = None):
        """Hold the rig for the ``with`` block: lock, renew every ``renew_s`` (lease_s/3), unlock.

        Renewals come from a heartbeat thread with its own socket (same session),
        so they continue during long drives. A failed renewal is kept in
        ``self.lease_error`` and raised when the block ends.
        """
        rig = self._rig(rig)
        self.lock(lease_s, rig=rig)
        hb = Heartbeat(self, rig, lease_s, renew_s or lease_s / 3.0)
        self._lease_thread, self.lease_error = hb, None
        hb.start()
        try:
            yield self
        finally:
            hb.stop()
            self._lease_thread = None
            self.lease_error = hb.error
            try:
                self.unlock(rig=rig)
            except (RigError, RigTimeout, RigUnavailable) as exc:
                log.warning("unlock of rig %s failed: %s (the lease runs out by itself)", rig, exc)
        if hb.error is not None:
            raise hb.error

    def _new_id(self) -> str:
        return f"{self._prefix}{next(self._count):08x}"

    def _roundtrip(self, frames: list, rid: str, op: str, rig: str | None) -> dict[str, Any]:
        tries = self.retries + 1
        dead = 0
        for k in range(tries):
            if k:
                time.sleep(min(self.backoff_s * 2 ** (k - 1), 2.0))
            reply = self._wait(self._socket(), rid, frames)
            if isinstance(reply, dict):
                return self._result(reply, op, rig)
            dead += reply == "down"
            self._drop_socket()  # lazy pirate: a fresh socket for the retry
        what = f"{op}" + (f" on rig '{rig}'" if rig else "")
        if not self._ever_connected:
            raise RigUnavailable(f"cannot reach {self.endpoint}: no connection after {tries} tries; "
                                 "start a server there (nado rig serve --bind ...)")
        if dead == tries:
            raise RigUnavailable(f"the server at {self.endpoint} is gone: the connection stayed down for "
                                 f"{self.dead_after_s:g} s in each of {tries} tries of {what}; restart it")
        raise RigTimeout(f"no reply from {self.endpoint} to {what} within {self.timeout_s:g} s, "
                         f"{tries} tries; is the server running? raise timeout_s for slow drives")

    def _wait(self, sock: zmq.Socket, rid: str, frames: list | None = None) -> Any:
        """Send ``frames``, then the reply to ``rid`` (a dict); or "timeout", "down" (no
        connection for dead_after_s), "damaged".

        Stale replies (other ids) are skipped. When connected this is a blocking receive in
        slices of at most 0.5 s; between slices the monitor tells whether the connection dropped.
        The request is sent just before the first receive (between them only the timing, which
        the transport outlasts): in one process, more work there makes the server wait for the GIL."""
        if frames is not None and self._connected:
            frames = P.try_send(sock, frames)  # None once sent
        now = time.monotonic()
        deadline = now + self.timeout_s
        while True:
            left_ms = int((deadline - now) * 1000)
            if left_ms <= 0:
                return "timeout"
            wait_ms = min(left_ms, _SLICE_MS)
            msg = None
            if self._connected:
                if wait_ms != self._rcvtimeo:
                    sock.setsockopt(zmq.RCVTIMEO, max(wait_ms, 1))
                    self._rcvtimeo = wait_ms
                if frames is not None:
                    frames = P.try_send(sock, frames)  # None once sent
                try:
                    msg = P.recv_frames(sock)
                except zmq.Again:
                    pass
            else:
                if frames is not None:
                    frames = P.try_send(sock, frames)  # None once sent
                if sock.poll(wait_ms if self._monitor is None else min(wait_ms, 20)):
                    msg = P.recv_frames(sock)
                    self._connected = self._ever_connected = True   # a reply proves the connection
                    self._down_since = None
            if msg is None:
                self._read_monitor()
                now = time.monotonic()
                if self._down_since is not None and now - self._down_since >= self.dead_after_s:
                    return "down"
                continue
            try:
                reply = P.decode(msg)
            except ProtocolError as exc:
                log.warning("damaged reply from %s (%s); retrying", self.endpoint, exc)
                return "damaged"
            if reply.get("id") == rid or (reply.get("id") is None and reply.get("ok") is False):
                return reply
            now = time.monotonic()

    def _result(self, reply: dict, op: str, rig: str | None) -> dict[str, Any]:
        if reply.get("ok") is True and isinstance(reply.get("result"), dict):
            return reply["result"]
        err = reply.get("error")
        if reply.get("ok") is not False or not isinstance(err, dict):
            raise ProtocolError(P.BAD_REQUEST, f"malformed reply from {self.endpoint}: keys {sorted(reply)}")
        code, message = str(err.get("code", P.INTERNAL)), str(err.get("message", ""))
        if code == P.BAD_INPUT:
            raise BadInput(message)
        if code == P.OUT_OF_RANGE:
            raise OutOfRange(message)
        if code in (P.BAD_REQUEST, P.VERSION_ERR):
            raise ProtocolError(code, message)
        if code == P.UNKNOWN_RIG:
            exc = RigUnavailable(message)
            exc.code = code  # type: ignore[attr-defined]
            raise exc
        raise RigError(code, message)

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, b"\x01" + self.peer_id + os.urandom(4))
            self._rcvtimeo = -1
            if not self.endpoint.startswith("inproc://"):
                sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
                sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1000, int(self.dead_after_s * 1000)))
                sock.setsockopt(zmq.RECONNECT_IVL, 100)
                sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
                if self.curve_keys is not None:
                    secure_client_socket(sock, self.curve_keys)
                self._monitor = sock.get_monitor_socket(_EVENTS)
                self._connected = False
                self._down_since = time.monotonic()
                self._dropped_handshakes = 0
            try:
                sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                self._sock = sock
                self._drop_socket()
                raise RigUnavailable(f"cannot connect to {self.endpoint}: {exc}") from None
            self._sock = sock
        return self._sock

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message
        while self._monitor is not None and self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event & _UP:
                self._connected = self._ever_connected = True
                self._down_since = None
                self._dropped_handshakes = 0
            elif event == zmq.EVENT_DISCONNECTED:
                if self._connected:
                    log.info("connection to %s lost", self.endpoint)
                self._connected = False
                if self._down_since is None:
                    self._down_since = time.monotonic()
            elif event & _AUTH_FAILED:
                self._refused()
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                if self.curve_keys is not None:
                    log.warning("CurveZMQ handshake with %s failed; wrong server.key?", self.endpoint)
                    continue
                self._dropped_handshakes += 1
                if self._dropped_handshakes >= _PLAIN_DROPS:
                    self._refused()

    def _refused(self) -> None:
        """The server turned this client away at the handshake: raise what to do about it."""
        self._drop_socket()
        if self.curve_keys is None:
            raise RigUnavailable(
                f"{self.endpoint} refused this client: the server requires CurveZMQ keys; pass "
                "RigClient(..., curve_keys=DIR) or set NADO_KEYS=DIR (see `nado keys generate`)")
        raise RigUnavailable(
            f"{self.endpoint} refused this client's key (CurveZMQ handshake failed): ask the rig's "
            "admin to add your NAME.key to the station's clients folder, and check that you have "
            "the right server.key")

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
            self._monitor = None

    def _drop_socket(self) -> None:
        self._stop_monitor()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._connected = self.endpoint.startswith("inproc://")
        self._down_since = None

    def close(self) -> None:
        """Stop a lease heartbeat, close the socket (linger 0). Idempotent."""
        hb = getattr(self, "_lease_thread", None)
        if hb is not None:
            hb.stop()
            self._lease_thread = None
        self._drop_socket()

    def __del__(self) -> None:  # a forgotten client must not leave an unclosed socket (ResourceWarning)
        try:
            self._drop_socket()
        except Exception:
            pass

    def __enter__(self) -> "RigClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RigClient({self.endpoint!r}, rig={self.rig!r}, timeout_s={self.timeout_s:g}, retries={self.retries})"


def _hostname() -> str:
    import socket
    return socket.gethostname()


class Heartbeat(threading.Thread):
    """Renews a lease every ``renew_s`` from its own socket (same session and peer) until stopped.

    Behind :meth:`RigClient.lease`; a failed renewal is kept in ``error``; ``renewed`` is
    released once per renewal (wait on it to order work after renewals).
    """

    def __init__(self, owner: RigClient, rig: str, lease_s: float, renew_s: float) -> None:
        super().__init__(name=f"lease-{rig}", daemon=True)
        self.rig, self.lease_s, self.renew_s = rig, lease_s, renew_s
        self.client = RigClient(owner.endpoint, rig, timeout_s=max(renew_s, 0.5), retries=1,
                                context=owner.context, curve_keys=owner.curve_keys, name=owner.name,
                                session=owner.session, dead_after_s=owner.dead_after_s,
                                peer_id=owner.peer_id)
        self.error: BaseException | None = None
        self.renewals = 0
        self.renewed = threading.Semaphore(0)
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.renew_s):
                try:
                    self.client.lock(self.lease_s)
                    self.renewals += 1
                    self.renewed.release()
                except (RigError, RigTimeout, RigUnavailable) as exc:
                    self.error = exc
                    log.warning("lease renewal of rig %s failed: %s", self.rig, exc)
                    return
        finally:
            self.client.close()

    def stop(self) -> None:
        self._halt.set()
        if self is not threading.current_thread():
            self.join(10.0)
