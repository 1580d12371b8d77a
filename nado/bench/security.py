"""Bench section ``security``: the bus under attack (issue 16), measured in one run.

- ``cross_peer_leaks``: N tries in which peer B resends peer A's request id with other
  inputs and seed on a leaky rig; a leak is a reply to B equal to A's outputs. Target 0.
- ``peak_rss_ratio``: the server's peak resident memory growth (sampled every millisecond from
  ``/proc/self/statm`` in the server process) during a maximal allowed drive
  (``max_drive_elements`` elements, float64, echo rig, in a rig server process) divided by the
  request plus reply bytes. Target <= 4. In full runs also for the emulated NRA
  (``nra_peak_rss_ratio``, a drive of 2**20 elements: its noise is drawn in blocks).
- ``sigterm_to_safe_s``: seconds from SIGTERM to the server's exit, during a drive of about
  20 s on the realtime emulated NRA; the rig must report ``make_safe`` and ``close``. The
  documented bound is ``shutdown_s`` (5 s) plus the rig's own ramp-down. Target <= 6 s.
- ``fuzz``: malformed and mutated messages (:mod:`bridge.fuzz`): sent, crashed (server
  errors counted ``INTERNAL`` or a dead server) and unanswered. Targets 0 and 0, out of
  >= 10^4 messages (``quick``) or >= 10^5 (full).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from bridge import RigServer
from bridge.backends.testrigs import LeakyRig
from bridge.server import MAX_DRIVE_ELEMENTS

from . import target

SECTION = "security"

# A rig server process: echo rig "echo", a realtime emulated NRA "nra" that prints what it
# is asked to do ("driving", "made safe", "closed") and a virtual-clock NRA "nrav"; argv: endpoint, then "ok" or "fail" (its
# make_safe fails); stdin: "?" or "reset" -> "rss NOW PEAK" (resident bytes). Also used by
# tests/test_bus_security.py.
SERVE = """
import os, sys, threading
from bridge.server import RigServer
from bridge.backends.testrigs import EchoRig
from emulator.nra import NRARig
class Marked(NRARig):
    def drive(self, *a, **k):
        print("driving", flush=True)
        return super().drive(*a, **k)
    def make_safe(self):
        super().make_safe()
        print("made safe", flush=True)
        if sys.argv[2] == "fail":
            raise RuntimeError("coil supply does not answer")
    def close(self):
        print("closed", flush=True)
rigs = {"echo": EchoRig(), "nra": Marked(clock="realtime", speed=1.0), "nrav": NRARig("nrav")}
server = RigServer(rigs, sys.argv[1], shutdown_s=5.0)
PAGE = os.sysconf("SC_PAGE_SIZE")
peak = [0]
def now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
def sample():   # the resident set, every millisecond: its peak since the last reset
    stop = threading.Event()
    while not stop.wait(0.001):
        peak[0] = max(peak[0], now())
def commands():
    for line in sys.stdin:
        if line.strip() == "reset":
            peak[0] = now()
        print("rss", now(), peak[0], flush=True)
threading.Thread(target=sample, daemon=True).start()
threading.Thread(target=commands, daemon=True).start()
print("ready", flush=True)
server.serve_forever()
print("stopped", flush=True)
"""


def _peer() -> bytes:
    return os.urandom(16)


def _sock(ctx: zmq.Context, endpoint: str, peer: bytes | None = None, timeout_s: float = 30.0) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    if peer is not None:
        s.setsockopt(zmq.ROUTING_ID, b"\x01" + peer + os.urandom(4))
    s.connect(endpoint)
    return s


def _drive(rig: str, x: np.ndarray, rid: str, seed: int | None) -> list:
    head = {"v": 1, "id": rid, "op": "drive", "rig": rig,
            "args": {"inputs": {"$nd": 0, "dtype": "<f8", "shape": list(x.shape)}, "reset": True, "seed": seed}}
    return [msgpack.packb(head), np.ascontiguousarray(x, dtype="<f8").tobytes()]


def cross_peer_leaks(n: int) -> dict[str, Any]:
    """N tries of peer B reusing peer A's id (see the module docstring)."""
    ctx = zmq.Context.instance()
    leaks = refused = 0
    with RigServer({"leaky": LeakyRig(seed=1)}, f"inproc://bench-sec-{uuid.uuid4().hex}", context=ctx) as srv:
        a, b = _sock(ctx, srv.endpoints[0], _peer()), _sock(ctx, srv.endpoints[0], _peer())
        try:
            rng = np.random.default_rng(0)
            for i in range(n):
                rid = uuid.uuid4().hex
                a.send_multipart(_drive("leaky", rng.uniform(-1, 1, (1, 8, 1)), rid, i))
                ra = a.recv_multipart()
                b.send_multipart(_drive("leaky", rng.uniform(-1, 1, (1, 8, 1)), rid, i + 1))
                rb = b.recv_multipart()
                if not msgpack.unpackb(rb[0])["ok"]:
                    refused += 1
                elif len(rb) > 1 and rb[1] == ra[1]:
                    leaks += 1
        finally:
            a.close(linger=0)
            b.close(linger=0)
    return {"tries": n, "leaks": leaks, "refused": refused}


def _serve(workdir: Path) -> tuple[subprocess.Popen, str]:
    endpoint = f"ipc://{workdir}/sec.sock"
    proc = subprocess.Popen([sys.executable, "-c", SERVE, endpoint, "ok"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the bench's rig server did not start")
    return proc, endpoint


def _rss(proc: subprocess.Popen, command: str = "?") -> tuple[int, int]:
    """(resident bytes now, peak since the last ``reset``) of the server process."""
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline().split()
    return int(line[1]), int(line[2])


def memory_and_shutdown(quick: bool) -> dict[str, Any]:
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory() as tmp:
        proc, endpoint = _serve(Path(tmp))
        sock = _sock(ctx, endpoint, timeout_s=120.0)
        try:
            warm = np.zeros((1, 1024, 1))
            sock.send_multipart(_drive("echo", warm, uuid.uuid4().hex, None))
            sock.recv_multipart()
            before, _ = _rss(proc, "reset")
            x = np.random.default_rng(2).uniform(-1, 1, (1, MAX_DRIVE_ELEMENTS, 1))
            sock.send_multipart(_drive("echo", x, uuid.uuid4().hex, None), copy=False)
            ok = msgpack.unpackb(sock.recv_multipart()[0])["ok"]
            _, peak = _rss(proc)
            moved = 2 * x.nbytes
            nra = None
            if not quick:   # the emulated NRA (its noise is drawn in blocks): 2**20 elements, ~15 s
                xn = np.full((1024, 1024, 1), 40.0)
                nb, _ = _rss(proc, "reset")
                sock.send_multipart(_drive("nrav", xn, uuid.uuid4().hex, 1), copy=False)
                nok = msgpack.unpackb(sock.recv_multipart()[0])["ok"]
                _, npk = _rss(proc)
                nra = {"elements": xn.size, "drive_ok": bool(nok), "rss_growth_bytes": npk - nb,
                       "peak_rss_ratio": (npk - nb) / (2 * xn.nbytes)}
            # a long drive, then SIGTERM
            sock.send_multipart(_drive("nra", np.full((1, 1280, 1), 40.0), uuid.uuid4().hex, 1))
            while proc.stdout.readline().strip() != "driving":
                pass
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=120)
            stop_s = time.monotonic() - t0
        finally:
            sock.close(linger=0)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = out.split("\n")
    return {"max_drive_elements": MAX_DRIVE_ELEMENTS, "drive_ok": bool(ok), "request_plus_reply_bytes": moved,
            "rss_before_bytes": before, "rss_peak_bytes": peak, "peak_rss_ratio": (peak - before) / moved,
            "sigterm_to_exit_s": stop_s, "made_safe": "made safe" in lines, "closed": "closed" in lines,
            "exit_code": proc.returncode, "nra": nra}


def fuzz(n: int) -> dict[str, Any]:
    """``n`` fuzzed messages (:func:`bridge.fuzz.run`); sent, crashed, unanswered, ..."""
    import logging
    from dataclasses import asdict

    from bridge import fuzz as bridge_fuzz
    level = logging.getLogger("bridge").level
    logging.getLogger("bridge").setLevel(logging.ERROR)   # expired fuzz leases are expected
    try:
        rep = bridge_fuzz.run(messages=n, seed=1)
    finally:
        logging.getLogger("bridge").setLevel(level)
    return {**asdict(rep), "sent": rep.inputs, "crashed": rep.crashes + rep.internal_errors,
            "unanswered": rep.unanswered}


def run(quick: bool) -> dict[str, Any]:
    leaks = cross_peer_leaks(200 if quick else 1000)
    mem = memory_and_shutdown(quick)
    fz = fuzz(10_000 if quick else 100_000)
    safe_s = mem["sigterm_to_exit_s"] if (mem["made_safe"] and mem["closed"] and mem["exit_code"] == 0) else float("inf")
    return {
        "cross_peer": leaks, "memory_and_shutdown": mem, "fuzz": fz,
        "targets": {
            "cross_peer_leaks": target(leaks["leaks"], 0, at_least=False),
            "peak_rss_ratio": target(mem["peak_rss_ratio"], 4.0, at_least=False),
            **({"nra_peak_rss_ratio": target(mem["nra"]["peak_rss_ratio"], 4.0, at_least=False)}
               if mem["nra"] else {}),
            "sigterm_to_safe_s": target(safe_s, 6.0, at_least=False),
            "fuzz_messages": target(fz["sent"], 10_000 if quick else 100_000),
            "fuzz_crashed": target(fz["crashed"], 0, at_least=False),
            "fuzz_unanswered": target(fz["unanswered"], 0, at_least=False),
        },
    }
