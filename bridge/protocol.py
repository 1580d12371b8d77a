"""Wire protocol v1 of the instrument bus: constants and pure encode/decode.

This one module holds everything both ends must agree on (like the zguide's
``MDP.py``); ``bridge/PROTOCOL.md`` is the language-neutral spec.

A message is a multipart ZeroMQ message ``[header, buf_0, buf_1, ...]``:

- ``header``: a msgpack map with string keys. Request: ``v`` (1), ``id`` (str),
  ``op`` (str), ``rig`` (str, for rig ops), ``args`` (map, optional).
  Reply: ``v``, ``id`` (echoed; nil when the request had no usable id),
  ``ok`` (bool), then ``result`` (map) or ``error`` (``{code, message}``).
- Arrays never travel inside msgpack: an array anywhere in ``args`` or
  ``result`` is the map ``{"$nd": i, "dtype": "<f8", "shape": [...]}`` where
  ``i`` indexes the buffer frames after the header (C order). Only ``<f4``,
  ``<f8`` and ``<i8`` are accepted. Every buffer frame is referenced exactly
  once, and its size must equal ``prod(shape) * itemsize``.

:func:`encode` turns a header holding numpy arrays into frames (the arrays'
own memory, for zero-copy sends with ``copy=False``); :func:`decode` turns
received frames back into a header holding read-write numpy arrays that view
the frames' memory (``np.frombuffer``). Malformed input raises
:class:`bridge.errors.ProtocolError` carrying the error code to answer with.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import msgpack
import numpy as np
import zmq
from zmq.backend import Socket as _ZmqSocket

from .errors import BadInput, ProtocolError
from .rig import SEED_END, check_seed

VERSION = 1

# Ops. Rig ops need a ``rig`` key in the header; replies to cached ops are kept by request id.
HELLO, PING, DESCRIBE, DRIVE = "hello", "ping", "describe", "drive"
LOCK, UNLOCK, STATUS = "lock", "unlock", "status"
OPS = (HELLO, PING, DESCRIBE, DRIVE, LOCK, UNLOCK, STATUS)
RIG_OPS = frozenset({DESCRIBE, DRIVE, LOCK, UNLOCK})
CACHED_OPS = frozenset({DESCRIBE, DRIVE})

# Optional top-level request key: the client's session token (str, 1..128 chars). A lease taken
# with ``lock`` belongs to the (user, client) pair that took it.
CLIENT_KEY = "client"

# Error codes.
BAD_REQUEST = "BAD_REQUEST"    # not a valid message
VERSION_ERR = "VERSION"        # unsupported protocol version
UNKNOWN_OP = "UNKNOWN_OP"
UNKNOWN_RIG = "UNKNOWN_RIG"
BAD_INPUT = "BAD_INPUT"        # wrong shape or dtype, NaN or inf
OUT_OF_RANGE = "OUT_OF_RANGE"  # outside describe()'s input min..max
BUSY = "BUSY"                  # the rig's queue is full, or another client holds its lease
RIG_FAULT = "RIG_FAULT"        # the rig failed while driving
TIMEOUT = "TIMEOUT"            # the rig timed out (e.g. a DAQ read)
INTERNAL = "INTERNAL"          # a bug in the server
CODES = (BAD_REQUEST, VERSION_ERR, UNKNOWN_OP, UNKNOWN_RIG, BAD_INPUT, OUT_OF_RANGE,
         BUSY, RIG_FAULT, TIMEOUT, INTERNAL)

# Arrays: little-endian only, never objects, never pickle.
DTYPES = ("<f4", "<f8", "<i8")
ND_KEY = "$nd"

# Limits (a server also sets ZMQ_MAXMSGSIZE to MAX_FRAME_BYTES).
MAX_HEADER_BYTES = 64 * 1024
MAX_FRAMES = 64                  # buffer frames per message
MAX_FRAME_BYTES = 1 << 30        # 1 GiB per buffer frame
MAX_NDIM = 8
MAX_DEPTH = 16                   # nesting of maps/lists in a header
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 128
# Peers on plain connections: a routing id of 0x01 + PEER_ID_BYTES + 4 bytes names the peer by
# its middle part, so one client's sockets (retries, lease heartbeat) are one peer.
PEER_ID_BYTES = 16


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(BAD_REQUEST, f"msgpack extension type {code} is not allowed in headers")


_unpackb = msgpack.unpackb


def unpack_header(data: bytes | memoryview) -> dict[str, Any]:
    """Unpack a header frame (msgpack map with str keys) within the limits; raise ProtocolError."""
    n = len(data)
    if n == 0:
        raise ProtocolError(BAD_REQUEST, "empty header frame; the first frame must be a msgpack map")
    if n > MAX_HEADER_BYTES:
        raise ProtocolError(BAD_REQUEST, f"header of {n} bytes exceeds the limit of {MAX_HEADER_BYTES}; "
                                         "send arrays as buffer frames, not inside the header")
    try:
        # raw=False, strict_map_key=True, use_list=True and every max_*_len = len(data) are
        # unpackb's defaults (msgpack >= 1.0); spelling them out costs a microsecond per message.
        obj = _unpackb(data, ext_hook=_refuse_ext, timestamp=0, max_ext_len=0)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(BAD_REQUEST, f"header is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, f"header must be a msgpack map, got {type(obj).__name__}")
    if len((data if type(data) is bytes else bytes(data)).translate(None, _NOT_CONTAINER)) > MAX_DEPTH:
        # else it cannot nest deeper
        check_depth(obj)
    return obj


# Every nesting level needs its own map/array marker byte: a header with at most MAX_DEPTH bytes
# that could be one (fixmap, fixarray, map16/32, array16/32) cannot nest deeper than MAX_DEPTH.
_NOT_CONTAINER = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or b in (0xDC, 0xDD, 0xDE, 0xDF)))


def check_depth(obj: Any) -> None:
    """Raise ``BAD_REQUEST`` when maps/lists in ``obj`` nest deeper than :data:`MAX_DEPTH`.

    The whole header counts, unknown keys included (iterative: no recursion limit to hit).
    """
    stack = [(obj, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        o, depth = pop()
        if depth > MAX_DEPTH:
            raise ProtocolError(BAD_REQUEST, f"header nests deeper than {MAX_DEPTH}")
        t = type(o)
        if t is dict:
            for v in o.values():
                if type(v) is dict or type(v) is list:
                    push((v, depth + 1))
        elif t is list:
            for v in o:
                if type(v) is dict or type(v) is list:
                    push((v, depth + 1))


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot send {type(obj).__name__} in a header")


_tls = threading.local()   # one msgpack.Packer per thread (a Packer is not thread-safe)


def pack_header(header: dict[str, Any]) -> bytes:
    """Pack a header map (numpy scalars become Python numbers)."""
    try:
        return _tls.packer.pack(header)
    except AttributeError:
        _tls.packer = msgpack.Packer(use_bin_type=True, default=_pack_default)
        return _tls.packer.pack(header)


_NP_DTYPES = {s: np.dtype(s) for s in DTYPES}


def wire_array(arr: np.ndarray) -> np.ndarray:
    """Return ``arr`` as a C-contiguous array of an allowed little-endian dtype (no copy if it is one)."""
    dt = arr.dtype
    if dt.str in _NP_DTYPES and arr.flags.c_contiguous:
        return arr
    if dt.kind == "f":
        want = "<f4" if dt.itemsize == 4 else "<f8"
    elif dt.kind in "iub":
        want = "<i8"
    else:
        raise ProtocolError(BAD_INPUT, f"arrays of dtype {dt} cannot travel; use one of {DTYPES}")
    return np.ascontiguousarray(arr, dtype=want)


def encode(header: dict[str, Any]) -> list[Any]:
    """Frames ``[header_bytes, buf_0, ...]`` for ``header``; numpy arrays become ``$nd`` refs.

    The buffers are the arrays themselves (C-contiguous, little-endian), so send
    them with ``send_multipart(frames, copy=False)`` for zero-copy. A header that
    already holds its references (:func:`array_ref`) needs only :func:`pack_header`.
    """
    bufs: list[np.ndarray] = []
    head = _encode_walk(header, bufs, 0)
    return [pack_header(head), *bufs]


def array_ref(i: int, arr: np.ndarray) -> dict[str, Any]:
    """The ``$nd`` reference to ``arr`` sent as buffer frame ``i`` (``arr`` from :func:`wire_array`)."""
    return {ND_KEY: i, "dtype": arr.dtype.str, "shape": list(arr.shape)}


def _encode_walk(obj: Any, bufs: list, depth: int) -> Any:
    t = type(obj)
    if t is np.ndarray:
        arr = wire_array(obj)
        bufs.append(arr)
        return array_ref(len(bufs) - 1, arr)
    if depth > MAX_DEPTH:
        raise ProtocolError(INTERNAL, f"header nests deeper than {MAX_DEPTH}")
    scalars = _SCALARS
    if t is dict or isinstance(obj, dict):
        return {k: v if type(v) in scalars else _encode_walk(v, bufs, depth + 1) for k, v in obj.items()}
    if t is list or t is tuple:
        return [v if type(v) in scalars else _encode_walk(v, bufs, depth + 1) for v in obj]
    return obj


def _frame_buffer(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", None)  # zmq.Frame
    return buf if buf is not None else memoryview(frame)


def _array_from_ref(ref: dict[str, Any], frames: Sequence[Any], used: list[bool]) -> np.ndarray:
    if len(ref) != 3 or "dtype" not in ref or "shape" not in ref:
        raise ProtocolError(BAD_REQUEST, f"array reference must have exactly the keys $nd, dtype, shape; got {sorted(ref)}")
    i, dtype, shape = ref[ND_KEY], ref["dtype"], ref["shape"]
    if type(i) is not int or not 0 <= i < len(frames):
        raise ProtocolError(BAD_REQUEST, f"array reference $nd={i!r} names no buffer frame "
                                         f"(the message has {len(frames)})")
    if used[i]:
        raise ProtocolError(BAD_REQUEST, f"buffer frame {i} is referenced twice")
    npdt = _NP_DTYPES.get(dtype) if type(dtype) is str else None
    if npdt is None:
        raise ProtocolError(BAD_INPUT, f"dtype {dtype!r} is not accepted; use one of {list(DTYPES)}")
    if type(shape) is not list or len(shape) > MAX_NDIM:
        raise ProtocolError(BAD_REQUEST, f"shape must be a list of at most {MAX_NDIM} non-negative ints, got {shape!r}")
    expected = npdt.itemsize
    bound = npdt.itemsize      # the bytes the shape would need with its zero dims read as 1
    for d in shape:
        if type(d) is not int or d < 0:
            raise ProtocolError(BAD_REQUEST, f"shape must be a list of at most {MAX_NDIM} non-negative ints, "
                                             f"got {shape!r}")
        expected *= d
        bound *= d or 1
    if bound > MAX_FRAME_BYTES:
        raise ProtocolError(BAD_REQUEST, f"shape {shape!r:.200} describes more than {MAX_FRAME_BYTES} bytes "
                                         "(even with its zero dimensions read as 1); send smaller arrays")
    used[i] = True
    frame = frames[i]
    nbytes = len(frame) if type(frame) is _Frame or type(frame) is bytes else memoryview(frame).nbytes
    if nbytes != expected:
        raise ProtocolError(BAD_REQUEST, f"buffer frame {i} holds {nbytes} bytes but dtype {dtype} "
                                         f"shape {shape} needs {expected}")
    # A view of the frame's memory (the array keeps the frame alive); writable for received frames.
    try:
        return _ndarray(shape, npdt, frame)
    except (ValueError, TypeError) as exc:   # never expected after the checks above; answered anyway
        raise ProtocolError(BAD_REQUEST, f"array {dtype} {shape!r:.200} cannot be read: {exc}") from None


_Frame = zmq.Frame
_ndarray = np.ndarray
_SCALARS = frozenset({type(None), bool, int, float, str})


def _walk(o: Any, bufs: Sequence[Any], used: list[bool], depth: int) -> Any:
    t = type(o)
    if t is dict:
        if ND_KEY in o:
            return _array_from_ref(o, bufs, used)
        if depth > MAX_DEPTH:
            raise ProtocolError(BAD_REQUEST, f"header nests deeper than {MAX_DEPTH}")
        for k, v in o.items():
            if type(v) not in _SCALARS:
                o[k] = _walk(v, bufs, used, depth + 1)
        return o
    if t is list:
        if depth > MAX_DEPTH:
            raise ProtocolError(BAD_REQUEST, f"header nests deeper than {MAX_DEPTH}")
        for k, v in enumerate(o):
            if type(v) not in _SCALARS:
                o[k] = _walk(v, bufs, used, depth + 1)
        return o
    if t in _SCALARS:
        return o
    raise ProtocolError(BAD_REQUEST, f"headers may not carry {type(o).__name__} values")


def resolve(obj: Any, bufs: Sequence[Any]) -> Any:
    """Replace every ``$nd`` reference in ``obj`` by an array viewing ``bufs[i]`` (in place).

    Every buffer frame must be referenced exactly once. Raises :class:`ProtocolError`
    on bad references, sizes, unknown dtypes (code ``BAD_INPUT``), or values a
    header may not carry.
    """
    if len(bufs) > MAX_FRAMES:
        raise ProtocolError(BAD_REQUEST, f"message has {len(bufs)} buffer frames; the limit is {MAX_FRAMES}")
    used = [False] * len(bufs)
    out = _walk(obj, bufs, used, 0)
    if not all(used):
        missing = [i for i, u in enumerate(used) if not u]
        raise ProtocolError(BAD_REQUEST, f"buffer frame(s) {missing} are not referenced by the header")
    return out


def decode(frames: Sequence[Any]) -> dict[str, Any]:
    """Header map from ``[header, buf_0, ...]`` with ``$nd`` refs replaced by numpy arrays.

    ``frames`` may be bytes or ``zmq.Frame`` objects (the arrays then view the
    frames' memory without copying; received frames are writable). Raises
    :class:`ProtocolError` when the header is not a msgpack map, on unknown
    dtypes (code ``BAD_INPUT``), on frames whose size does not match their
    declared shape, and on buffer frames that are missing, referenced twice or
    not referenced at all.
    """
    if not frames:
        raise ProtocolError(BAD_REQUEST, "message has no header frame")
    f = frames[0]
    return resolve(unpack_header(f.buffer if type(f) is _Frame else _frame_buffer(f)), frames[1:])


# ---- argument schemas --------------------------------------------------------------------

ARGS = {DRIVE: frozenset({"inputs", "reset", "seed"}), LOCK: frozenset({"lease_s", "holder"})}
_NO_ARGS: frozenset = frozenset()


def check_args(op: str, args: dict, max_lease_s: float = 3600.0) -> None:
    """Check an op's resolved ``args`` against its schema; raise :class:`ProtocolError`."""
    allowed = ARGS.get(op, _NO_ARGS)
    if args.keys() - allowed:
        raise ProtocolError(BAD_REQUEST, f"op {op} takes args {sorted(allowed)}, "
                                           f"not {sorted(args.keys() - allowed)}")
    if op == LOCK:
        t = args.get("lease_s")
        if type(t) not in (int, float) or not 0 < t <= max_lease_s:
            raise ProtocolError(BAD_REQUEST, f"lock needs args.lease_s, seconds in (0, "
                                               f"{max_lease_s:g}], got {t!r:.80}")
        h = args.get("holder", "")
        if type(h) is not str or len(h) > MAX_NAME_CHARS:
            raise ProtocolError(BAD_REQUEST, f"args.holder must be a name of at most "
                                               f"{MAX_NAME_CHARS} characters, got {h!r:.80}")
        return
    if op != DRIVE:
        return
    if "inputs" not in args:
        raise ProtocolError(BAD_REQUEST, "drive needs args.inputs, an array reference {$nd, dtype, shape}")
    if not isinstance(args["inputs"], np.ndarray):
        raise ProtocolError(BAD_INPUT, "args.inputs must be an array sent as a buffer frame "
                                         "({$nd, dtype, shape}), not a msgpack value")
    if not isinstance(args.get("reset", True), bool):
        raise ProtocolError(BAD_REQUEST, f"args.reset must be a bool, got {args['reset']!r:.80}")
    seed = args.get("seed")
    if seed is not None and type(seed) is not int or seed is not None and not 0 <= seed < SEED_END:
        try:
            check_seed(seed)
        except BadInput as exc:
            raise ProtocolError(BAD_REQUEST, f"args.{exc.message}") from None


# ---- headers -------------------------------------------------------------------------------

def request(op: str, req_id: str, rig: str | None = None, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request header (arrays in ``args`` stay numpy arrays until :func:`encode`)."""
    head: dict[str, Any] = {"v": VERSION, "id": req_id, "op": op}
    if rig is not None:
        head["rig"] = rig
    if args is not None:
        head["args"] = args
    return head


def reply_ok(req_id: str | None, result: dict[str, Any]) -> dict[str, Any]:
    return {"v": VERSION, "id": req_id, "ok": True, "result": result}


def reply_error(req_id: str | None, code: str, message: str) -> dict[str, Any]:
    return {"v": VERSION, "id": req_id, "ok": False, "error": {"code": code, "message": message}}


def error_frames(req_id: str | None, code: str, message: str) -> list[bytes]:
    """Frames of an error reply (never raises)."""
    return [pack_header(reply_error(req_id, code, str(message)[:4096]))]


# ---- transport helpers (pyzmq's send/recv_multipart cost more per frame) -------------------
#
# These call the Cython backend's send/recv directly: the ``zmq.Socket`` wrappers add a
# Python frame (and keyword handling) per call, about a microsecond each on a small message.
# Small frames are copied into the ZeroMQ message (cheaper than a zero-copy ``zmq.Frame``);
# frames of ``COPY_BELOW`` bytes or more travel zero-copy.

_SNDMORE, _NOBLOCK = int(zmq.SNDMORE), int(zmq.NOBLOCK)
_bsend = _ZmqSocket.send
_brecv = _ZmqSocket.recv
COPY_BELOW = 1 << 16


def send_frames(sock: zmq.Socket, frames: Sequence[Any], flags: int = 0) -> None:
    """Send ``frames`` as one multipart message, zero-copy for large buffers."""
    last = len(frames) - 1
    more = flags | _SNDMORE
    for i, frame in enumerate(frames):
        t = type(frame)
        if t is bytes:
            copy = True
        elif t is np.ndarray:
            copy = frame.nbytes < COPY_BELOW
        else:
            copy = False
        _bsend(sock, frame, more if i < last else flags, copy, False)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list:
    """Receive one multipart message as ``zmq.Frame`` objects (no copies)."""
    f = _brecv(sock, flags, False, False)
    parts = [f]
    while f.more:
        f = _brecv(sock, 0, False, False)
        parts.append(f)
    return parts


def try_send(sock: zmq.Socket, frames: Sequence[Any]) -> Sequence[Any] | None:
    """Send without blocking: None when sent, else ``frames`` (no peer takes them yet, e.g. a
    DEALER whose connection a CURVE server refused: a blocking send would wait for ever)."""
    try:
        send_frames(sock, frames, _NOBLOCK)
        return None
    except zmq.Again:
        return frames
