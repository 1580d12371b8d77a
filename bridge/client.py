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

A client is not thread-safe (it owns a ZeroMQ socket): use one per thread.
Arrays in results view the reply's memory (writable, no copy).
"""
from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import numpy as np
import zmq

from . import protocol as P
from .errors import BadInput, OutOfRange, ProtocolError, RigError, RigTimeout, RigUnavailable
from .rig import DriveResult

_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED


class RigClient:
    """Client of one server (``endpoint``) and, by default, one of its rigs (``rig``).

    ``rig=None`` picks the server's only rig, or needs ``rig=`` on each call.
    ``timeout_s``: seconds to wait for each try; ``retries``: tries after the
    first. ``context`` defaults to ``zmq.Context.instance()``.
    """

    def __init__(self, endpoint: str, rig: str | None = None, *, timeout_s: float = 10.0,
                 retries: int = 3, context: zmq.Context | None = None) -> None:
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
        self._prefix = uuid.uuid4().hex[:24]   # request id = random prefix + counter: unique, cheap
        self._count = itertools.count()

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
        arr = np.asarray(inputs)
        if arr.dtype.kind not in "fiu":
            raise BadInput(f"inputs must be numeric, got dtype {arr.dtype}")
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise BadInput(f"seed must be None or an int >= 0, got {seed!r}")
            seed = int(seed)
        arr = P.wire_array(arr)
        rig = self._rig(rig)
        rid = self._new_id()
        head = {"v": P.VERSION, "id": rid, "op": P.DRIVE, "rig": rig, "args": {
            "inputs": {P.ND_KEY: 0, "dtype": arr.dtype.str, "shape": list(arr.shape)},
            "reset": bool(reset), "seed": seed}}
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
        return self._roundtrip(P.encode(P.request(op, rid, rig, args)), rid, op, rig)

    def _new_id(self) -> str:
        return f"{self._prefix}{next(self._count):08x}"

    def _roundtrip(self, frames: list, rid: str, op: str, rig: str | None) -> dict[str, Any]:
        tries = self.retries + 1
        for _ in range(tries):
            sock = self._socket()
            P.send_frames(sock, frames)
            reply = self._wait(sock, rid)
            if reply is not None:
                return self._result(reply, op, rig)
            self._drop_socket()  # lazy pirate: a fresh socket for the retry
        what = f"{op}" + (f" on rig '{rig}'" if rig else "")
        if not self._ever_connected:
            raise RigUnavailable(f"cannot reach {self.endpoint}: no connection after {tries} tries of "
                                 f"{self.timeout_s:g} s; start a server there (nado rig serve --bind ...)")
        raise RigTimeout(f"no reply from {self.endpoint} to {what} within {self.timeout_s:g} s, "
                         f"{tries} tries; is the server running? raise timeout_s for slow drives")

    def _wait(self, sock: zmq.Socket, rid: str) -> dict | None:
        """The reply to ``rid``, or None after ``timeout_s``; stale replies are skipped."""
        deadline = time.monotonic() + self.timeout_s
        left_ms = int(self.timeout_s * 1000)
        while True:
            if self._monitor is None:  # connected: a blocking receive with a timeout
                if left_ms != self._rcvtimeo:
                    sock.setsockopt(zmq.RCVTIMEO, max(left_ms, 1))
                    self._rcvtimeo = left_ms
                try:
                    msg = P.recv_frames(sock)
                except zmq.Again:
                    return None
            else:  # not yet connected: watch the monitor too
                poller = zmq.Poller()
                poller.register(sock, zmq.POLLIN)
                poller.register(self._monitor, zmq.POLLIN)
                events = dict(poller.poll(left_ms))
                if self._monitor in events:
                    self._read_monitor()
                msg = P.recv_frames(sock) if events.get(sock) else None
                if msg is not None and not self._connected:
                    self._connected = self._ever_connected = True
                    self._stop_monitor()
            if msg is not None:
                reply = P.decode(msg)
                if reply.get("id") == rid or (reply.get("id") is None and reply.get("ok") is False):
                    return reply
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return None

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
            self._rcvtimeo = -1
            if not self._connected:
                self._monitor = sock.get_monitor_socket(_EVENTS)
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
            if event & _EVENTS:
                self._connected = self._ever_connected = True
                self._stop_monitor()

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

    def close(self) -> None:
        """Close the socket (linger 0). Idempotent."""
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
