"""The one raw-socket helper of the bus tests: a client written from bridge/PROTOCOL.md with
pyzmq and msgpack only (not RigClient), as an independent or hostile client would be.

- :func:`peer_id` / :func:`routing_id`: a caller's 16-byte peer name and a socket routing id
  carrying it (``0x01 + peer + 4 bytes``: several sockets, one peer; PROTOCOL.md "Peers").
- :func:`raw_socket`: a connected socket (DEALER by default), optionally as ``peer``.
- :func:`raw_call`: send frames on a fresh socket, return ``(header dict, buffer frames)``.
- :func:`drive_frames`: the frames of a drive request.
"""
from __future__ import annotations

import os
import uuid

import msgpack
import numpy as np
import zmq


def peer_id() -> bytes:
    return os.urandom(16)


def routing_id(peer: bytes) -> bytes:
    return b"\x01" + peer + os.urandom(4)


def raw_socket(endpoint: str, kind: int = zmq.DEALER, *, peer: bytes | None = None, timeout_s: float = 5.0,
               curve: tuple | None = None, context: zmq.Context | None = None) -> zmq.Socket:
    """A socket connected to ``endpoint``; ``curve``: (public, secret, server public) z85 keys."""
    sock = (context or zmq.Context.instance()).socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    if peer is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id(peer))
    if curve is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = curve
    sock.connect(endpoint)
    return sock


def reply(sock: zmq.Socket) -> tuple[dict, list[bytes]]:
    """The next reply on ``sock`` as (header dict, buffer frames); zmq.Again on timeout."""
    msg = sock.recv_multipart()
    return msgpack.unpackb(msg[0], raw=False), msg[1:]


def raw_call(endpoint: str, frames: list, kind: int = zmq.DEALER, *, peer: bytes | None = None,
             timeout_s: float = 5.0, curve: tuple | None = None) -> tuple[dict, list[bytes]]:
    """Send ``frames`` on a fresh socket; (header dict, buffer frames) of the reply."""
    sock = raw_socket(endpoint, kind, peer=peer, timeout_s=timeout_s, curve=curve)
    try:
        sock.send_multipart(frames)
        return reply(sock)
    finally:
        sock.close(linger=0)


def drive_frames(rig: str, x, *, rid: str | None = None, seed=None, reset=True, args: dict | None = None,
                 ref: dict | None = None, **top) -> list:
    """Frames of a drive of ``x`` (float64) on ``rig``; ``args``/``ref`` replace the defaults."""
    x = np.ascontiguousarray(x, dtype="<f8")
    ref = ref if ref is not None else {"$nd": 0, "dtype": "<f8", "shape": list(x.shape)}
    a = {"inputs": ref, "reset": reset, "seed": seed} if args is None else args
    head = {"v": 1, "id": rid or uuid.uuid4().hex, "op": "drive", "rig": rig, "args": a, **top}
    return [msgpack.packb(head), x.tobytes()]
