"""Bench section ``bus``: the instrument bus beside raw pyzmq, in the same run.

- Small round trip: ``RigClient.drive`` of a ``(1, 64, 1)`` float64 input on an
  :class:`bridge.backends.testrigs.EchoRig` (a rig that does no work) through a
  :class:`bridge.RigServer`, beside a raw pyzmq DEALER -> ROUTER echo thread
  sending the very same request frames. p50 and p99 of each, in seconds, over
  ``rounds`` interleaved blocks (alternating which goes first). Target: bus p50
  within 2x of raw, as the median of the per-block ratios
  (``small_rtt_ratio_p50``; the ratio of the pooled p50s is reported beside it).
- Large payload: a drive with 16 MiB of inputs and 16 MiB of outputs
  (``(1, 2**21, 1)`` float64; 4x smaller with ``quick``) beside the raw echo of
  the same frames. Throughput = (bytes in + bytes out) / round trip, bytes/s.
  Target: bus at least 0.8x raw (arrays travel as zero-copy frames).

Both servers listen on ``tcp://127.0.0.1`` in this process; blocks of raw and
bus round trips alternate so that load on the machine hits both alike (the
1-minute load average is recorded beside the figures). The bus's extra cost on
a small drive is Python work per message through its one decode/encode path
(``bridge.protocol``: msgpack header, depth, schema and range checks, the peer's
name, the rig's own call, the reply's encode; the reply cache entry, which keeps
the request with its reply, is made after the reply is sent). A real rig's step takes
milliseconds, so clarity wins over the last tens of microseconds: the target is
2x raw. Large drives move as zero-copy frames.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import zmq

from bridge import RigClient, RigServer
from bridge import protocol as P
from bridge.backends.testrigs import EchoRig

from . import target

SECTION = "bus"


class _RawEcho:
    """A ROUTER thread that sends every message straight back (copy=False)."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(100):
                self.sock.send_multipart(self.sock.recv_multipart(copy=False), copy=False)
        self.sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _raw_round_trips(sock: zmq.Socket, frames: list, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        sock.send_multipart(frames, copy=False)
        sock.recv_multipart(copy=False)
        out.append(time.perf_counter() - t0)
    return out


def _bus_round_trips(client: RigClient, x: np.ndarray, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.drive(x)
        out.append(time.perf_counter() - t0)
    return out


def run(quick: bool) -> dict[str, Any]:
    ctx = zmq.Context.instance()
    raw = _RawEcho(ctx)
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(raw.endpoint)
    server = RigServer({"echo": EchoRig()}, "tcp://127.0.0.1:*", context=ctx).start()
    client = RigClient(server.endpoints[0], "echo", timeout_s=60.0, retries=0, context=ctx)
    try:
        small = np.random.default_rng(0).uniform(-1, 1, (1, 64, 1))
        small_frames = P.encode(P.request(P.DRIVE, "0" * 32, "echo", {"inputs": small, "reset": True, "seed": None}))
        rounds, per = (10, 100) if quick else (20, 250)
        raw_t: list[float] = []
        bus_t: list[float] = []
        ratios: list[float] = []   # per round: bus p50 / raw p50 of the two adjacent blocks
        _raw_round_trips(dealer, small_frames, 200)   # warm up both paths (and the fast path's timing)
        _bus_round_trips(client, small, 200)
        for i in range(rounds):  # interleaved blocks, alternating which goes first
            if i % 2:
                b = _bus_round_trips(client, small, per)
                r = _raw_round_trips(dealer, small_frames, per)
            else:
                r = _raw_round_trips(dealer, small_frames, per)
                b = _bus_round_trips(client, small, per)
            raw_t += r
            bus_t += b
            ratios.append(float(np.median(b) / np.median(r)))
        raw50, raw99 = np.percentile(raw_t, [50, 99])
        bus50, bus99 = np.percentile(bus_t, [50, 99])

        n = 2**19 if quick else 2**21
        big = np.random.default_rng(1).uniform(-1, 1, (1, n, 1))
        big_frames = P.encode(P.request(P.DRIVE, "1" * 32, "echo", {"inputs": big, "reset": True, "seed": None}))
        reps = 4 if quick else 8
        raw_big: list[float] = []
        bus_big: list[float] = []
        _raw_round_trips(dealer, big_frames, 1)
        _bus_round_trips(client, big, 1)
        for i in range(reps):  # alternate which goes first
            if i % 2:
                bus_big += _bus_round_trips(client, big, 1)
            raw_big += _raw_round_trips(dealer, big_frames, 1)
            if not i % 2:
                bus_big += _bus_round_trips(client, big, 1)
        moved = 2 * big.nbytes
        raw_tp = moved / float(np.median(raw_big))
        bus_tp = moved / float(np.median(bus_big))
        # The target ratio: the median of the per-round ratios, robust to load that changes
        # between rounds on a shared machine (the pooled ratio is reported beside it).
        rtt_ratio = float(np.median(ratios))
        tp_ratio = bus_tp / raw_tp
        return {
            "small_bytes": int(small.nbytes),
            "small_rtt_p50_s": float(bus50), "small_rtt_p99_s": float(bus99),
            "raw_rtt_p50_s": float(raw50), "raw_rtt_p99_s": float(raw99),
            "small_rtt_ratio_p50": rtt_ratio, "small_rtt_ratio_p99": float(bus99 / raw99),
            "small_rtt_ratio_p50_pooled": float(bus50 / raw50),
            "small_rtt_ratio_rounds": [round(r, 3) for r in ratios],
            "large_bytes_each_way": int(big.nbytes),
            "large_throughput_bytes_per_s": bus_tp, "raw_throughput_bytes_per_s": raw_tp,
            "large_throughput_ratio": float(tp_ratio),
            "round_trips": {"small_each": len(bus_t), "small_rounds": rounds, "large_each": reps},
            "server": {k: v for k, v in server.status().items() if k != "rigs"},
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "targets": {
                "small_rtt_ratio_p50": target(rtt_ratio, 2.0, at_least=False),
                "large_throughput_ratio": target(tp_ratio, 0.8),
            },
        }
    finally:
        client.close()
        server.close()
        dealer.close(linger=0)
        raw.close()
