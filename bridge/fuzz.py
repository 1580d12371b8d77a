"""A standalone fuzz run of the rig server: ``python -m bridge.fuzz --seconds 60 [--seed 1] [--tcp]``.

Sends a stream of hostile messages to a :class:`bridge.RigServer` serving a
strict echo rig, and checks, every ``probe_every`` inputs, that the server
still answers a well-formed client, that its loop thread is alive, that no
message caused an ``INTERNAL`` error, and that nothing invalid reached the rig
(the rig re-checks every call it gets). Inputs mix:

- random frames (1..5 frames of random bytes);
- random msgpack headers (nested maps/lists of random scalars) with random buffers;
- well-formed requests of every op (drive, describe, lock, unlock, status,
  hello, ping) mutated: bit flips, truncation, a key set to a random value, a
  wrong dtype/shape/index in the array reference, buffer frames dropped,
  duplicated or resized;
- untouched valid requests (so valid drives keep reaching the rig).

Prints one summary line and returns non-zero when any check failed. No
hypothesis needed (numpy's generator, seeded): this runs anywhere bridge does.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import numpy as np
import zmq

from .server import RigServer
from .backends.testrigs import EchoRig

OPS = ("drive", "drive", "drive", "describe", "lock", "unlock", "status", "hello", "ping")
KEYS = ("v", "id", "op", "rig", "args", "client", "inputs", "reset", "seed", "lease_s", "holder",
        "$nd", "dtype", "shape")


class StrictEcho(EchoRig):
    """An echo rig on -10..10 that records every call that is not a valid drive."""

    def __init__(self) -> None:
        super().__init__("echo", lo=-10.0, hi=10.0)
        self.violations: list = []

    def drive(self, inputs, *, reset=True, seed=None):
        x = np.asarray(inputs)
        if not (x.dtype == np.float64 and x.ndim == 3 and x.shape[2] == 1 and x.size
                and np.all(np.isfinite(x)) and np.all(np.abs(x) <= 10.0) and isinstance(reset, bool)
                and (seed is None or (type(seed) is int and seed >= 0))):
            self.violations.append((str(x.dtype), x.shape, reset, seed))
        return super().drive(inputs, reset=reset, seed=seed)


@dataclass
class FuzzReport:
    inputs: int = 0           # messages sent
    handled: int = 0          # messages the server read before it closed (the rest were queued)
    seconds: float = 0.0
    probes: int = 0
    probes_answered: int = 0
    rig_calls: int = 0
    invalid_at_rig: int = 0
    internal_errors: int = 0
    crashes: int = 0          # server loop thread died or stopped answering
    expected: int = 0         # messages that must be answered (all but a lone empty frame)
    answered: int = 0         # replies received

    @property
    def unanswered(self) -> int:
        return self.expected - self.answered

    @property
    def ok(self) -> bool:
        return (self.crashes == 0 and self.invalid_at_rig == 0 and self.internal_errors == 0
                and self.probes_answered == self.probes and self.unanswered == 0)


def _random_value(rng: np.random.Generator, depth: int = 0) -> Any:
    k = rng.integers(0, 9 if depth < 3 else 7)
    if k == 0:
        return None
    if k == 1:
        return bool(rng.integers(2))
    if k == 2:
        return int(rng.integers(-2**63, 2**63 - 1))
    if k == 3:
        return float(rng.choice([0.0, -1.0, 1e308, np.nan, np.inf, float(rng.normal())]))
    if k == 4:
        return "".join(chr(c) for c in rng.integers(32, 0x2FF, rng.integers(0, 12)))
    if k == 5:
        return rng.bytes(int(rng.integers(0, 16)))
    if k == 6:
        return str(rng.choice(["drive", "echo", "<f8", "lock", "", "$nd", "x" * 200]))
    if k == 7:
        return [_random_value(rng, depth + 1) for _ in range(rng.integers(0, 4))]
    return {str(rng.choice(KEYS)): _random_value(rng, depth + 1) for _ in range(rng.integers(0, 4))}


def _valid(rng: np.random.Generator) -> tuple[dict, list[bytes]]:
    op = str(rng.choice(OPS))
    head: dict[str, Any] = {"v": 1, "id": uuid.uuid4().hex, "op": op, "client": "fuzz"}
    bufs: list[bytes] = []
    if op in ("drive", "describe", "lock", "unlock"):
        head["rig"] = "echo"
    if op == "drive":
        B, T = int(rng.integers(1, 3)), int(rng.integers(1, 5))
        x = rng.uniform(-10, 10, (B, T, 1))
        head["args"] = {"inputs": {"$nd": 0, "dtype": "<f8", "shape": [B, T, 1]}, "reset": True,
                        "seed": int(rng.integers(0, 100))}
        bufs = [x.tobytes()]
    elif op == "lock":
        head["args"] = {"lease_s": float(rng.uniform(0.01, 0.2)), "holder": "fuzz"}
    return head, bufs


def _mutate(rng: np.random.Generator, head: dict, bufs: list[bytes]) -> list[bytes]:
    kind = int(rng.integers(0, 7))
    if kind == 0:                                   # a key set to anything
        key = str(rng.choice(KEYS))
        target = head["args"] if "args" in head and isinstance(head["args"], dict) and rng.integers(2) else head
        target[key] = _random_value(rng)
    elif kind == 1 and "args" in head and isinstance(head["args"].get("inputs"), dict):
        ref = head["args"]["inputs"]
        bad = [-1, 1, 2**40, ">f8", "<c16", "|O", "<f4", [1, 2], [-1, 1, 1], [2**31, 2**31, 1], [1] * 9, "x"]
        ref[str(rng.choice(["$nd", "dtype", "shape"]))] = bad[int(rng.integers(0, len(bad)))]
    elif kind == 2 and bufs:                        # resize or drop a buffer
        bufs = [] if rng.integers(2) else [bufs[0][: int(rng.integers(0, len(bufs[0]) + 1))] + rng.bytes(
            int(rng.integers(0, 9)))]
    elif kind == 3:                                 # an extra buffer
        bufs = [*bufs, rng.bytes(int(rng.integers(0, 64)))]
    frames = [msgpack.packb(head, use_bin_type=True), *bufs]
    if kind == 4:                                   # bit flips in the header
        h = bytearray(frames[0])
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(h)))
            h[i] ^= 1 << int(rng.integers(0, 8))
        frames[0] = bytes(h)
    elif kind == 5:                                 # truncated header
        frames[0] = frames[0][: int(rng.integers(0, len(frames[0])))]
    elif kind == 6 and bufs:                        # NaN/inf/out of range inputs
        x = np.frombuffer(bufs[0], "<f8").copy() if len(bufs[0]) % 8 == 0 else np.zeros(1)
        if x.size:
            x[int(rng.integers(0, x.size))] = float(rng.choice([np.nan, np.inf, -np.inf, 11.0, -1e300]))
        frames[1] = x.tobytes()
    return frames


def _message(rng: np.random.Generator) -> list[bytes]:
    k = rng.random()
    if k < 0.15:
        return [rng.bytes(int(rng.integers(0, 64))) for _ in range(rng.integers(1, 6))]
    if k < 0.35:
        head = {str(rng.choice(KEYS)): _random_value(rng) for _ in range(rng.integers(0, 7))}
        return [msgpack.packb(head, use_bin_type=True), *[rng.bytes(int(rng.integers(0, 40)))
                                                          for _ in range(rng.integers(0, 3))]]
    head, bufs = _valid(rng)
    if k < 0.45:
        return [msgpack.packb(head, use_bin_type=True), *bufs]
    return _mutate(rng, head, bufs)


def _probe(sock: zmq.Socket, timeout_s: float = 5.0) -> bool:
    rid = uuid.uuid4().hex
    sock.send(msgpack.packb({"v": 1, "id": rid, "op": "ping"}))
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not sock.poll(int(left * 1000) + 1):
            return False
        head = msgpack.unpackb(sock.recv_multipart()[0])
        if head.get("id") == rid:
            return head.get("ok") is True
    return False


def run(seconds: float = 10.0, *, seed: int = 0, tcp: bool = False, probe_every: int = 50,
        messages: int | None = None) -> FuzzReport:
    """Fuzz a fresh server for ``seconds`` (or ``messages`` messages); return the :class:`FuzzReport`.

    Every message but a lone empty frame (a REQ delimiter with nothing after it, dropped by the
    protocol) must be answered: the replies are counted (``unanswered`` = expected - received).
    """
    rng = np.random.default_rng(seed)
    rig = StrictEcho()
    ctx = zmq.Context.instance()
    server = RigServer({"echo": rig}, "tcp://127.0.0.1:*" if tcp else f"inproc://fuzz-{uuid.uuid4().hex}",
                       max_lease_s=1.0, peer_replies=1 << 20, peer_queue=1 << 20).start()
    fuzzer, probe = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    rep = FuzzReport()
    try:
        for s in (fuzzer, probe):
            s.setsockopt(zmq.LINGER, 0)
            s.connect(server.endpoints[0])
        t0 = time.monotonic()
        while (rep.inputs < messages) if messages is not None else (time.monotonic() - t0 < seconds):
            msg = _message(rng)
            fuzzer.send_multipart(msg)
            rep.inputs += 1
            rep.expected += not (len(msg) == 1 and len(msg[0]) == 0)
            while fuzzer.poll(0):
                fuzzer.recv_multipart()
                rep.answered += 1
            if rep.inputs % probe_every == 0:
                rep.probes += 1
                alive = _probe(probe) and server._thread is not None and server._thread.is_alive()
                rep.probes_answered += alive
                if not alive:
                    rep.crashes += 1
                    break
        while rep.answered < rep.expected and fuzzer.poll(5000):   # the last replies
            fuzzer.recv_multipart()
            rep.answered += 1
        rep.seconds = time.monotonic() - t0
    finally:
        fuzzer.close(linger=0)
        probe.close(linger=0)
        server.close()
    rep.handled = server.status()["requests"] - rep.probes
    rep.rig_calls = rig.drive_calls
    rep.invalid_at_rig = len(rig.violations)
    rep.internal_errors = server.status()["errors"].get("INTERNAL", 0)
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bridge.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (60)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (0)")
    ap.add_argument("--tcp", action="store_true", help="fuzz over tcp://127.0.0.1 instead of inproc")
    args = ap.parse_args(argv)
    logging.getLogger("bridge").setLevel(logging.ERROR)   # leases the fuzzer takes run out: expected
    rep = run(args.seconds, seed=args.seed, tcp=args.tcp)
    print(f"fuzz: {rep.inputs} inputs ({rep.handled} handled) in {rep.seconds:.1f} s, {rep.crashes} crashes, "
          f"{rep.internal_errors} internal errors, {rep.invalid_at_rig} invalid calls at the rig "
          f"({rep.rig_calls} valid drives reached it), {rep.unanswered} unanswered, "
          f"probes answered {rep.probes_answered}/{rep.probes}: "
          f"{'OK' if rep.ok else 'FAILED'}")
    print(asdict(rep))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
