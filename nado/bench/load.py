"""Bench section ``load``: many concurrent clients on one rig server.

16 clients (threads, each its own ``RigClient``) each send 1,000 drives,
alternating between two echo rigs served by one ``nado rig serve`` process
on ``tcp://127.0.0.1``. Every drive carries a unique tag in its inputs
(client, sequence number, rig), and an echo rig returns its inputs, so each
reply is checked against its own request. Reported: throughput (drives/s),
latency p50/p99 (seconds), and the checks: nothing lost (every client got every
reply), nothing duplicated (drives executed at the server = drives sent),
every reply matched to its request. ``quick`` runs 16 x 200. The same load
runs again with CurveZMQ (keys made on the fly, station ``[security]``) to show
what encryption and authentication cost (``curve``).

:func:`run_load` is also used by ``tests/test_load.py`` (smaller sizes).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import target

SECTION = "load"

STATION = """
[rigs.a]
backend = "echo"
[rigs.b]
backend = "echo"
"""


def start_server(workdir: Path, curve: bool = False) -> tuple[subprocess.Popen, str]:
    """A ``nado rig serve`` process with echo rigs ``a`` and ``b``; (process, endpoint).

    ``curve``: make keys in ``workdir`` (``server/``, ``client/``) and require them.
    """
    st = workdir / "load_station.toml"
    text = STATION
    if curve:
        import shutil

        from bridge.auth import generate
        generate("server", workdir / "server")
        generate("client", workdir / "client")
        (workdir / "server" / "clients").mkdir()
        shutil.copy(workdir / "client" / "client.key", workdir / "server" / "clients")
        shutil.copy(workdir / "server" / "server.key", workdir / "client")
        text += '\n[security]\nserver_key = "server/server.key_secret"\nclients = "server/clients"\n'
    st.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "nado.cli", "rig", "serve", str(st), "--bind",
                             "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = proc.stdout.readline()
    if " on tcp://" not in line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"rig server did not start: {line!r}")
    return proc, line.split(" on ")[1].split(";")[0].strip()


def _client(endpoint: str, cid: int, requests: int, lat: list, bad: list, errors: list, keys) -> None:
    from bridge import RigClient
    try:
        with RigClient(endpoint, timeout_s=30.0, retries=3, curve_keys=keys) as client:
            for seq in range(requests):
                rig = "ab"[seq % 2]
                tag = cid * 1_000_000.0 + seq * 10.0 + (seq % 2)
                x = np.array([[[tag], [-tag]]])
                t0 = time.perf_counter()
                res = client.drive(x, rig=rig)
                lat.append(time.perf_counter() - t0)
                if not np.array_equal(res.outputs, x):
                    bad.append((cid, seq))
    except Exception as exc:  # reported, never hidden
        errors.append(f"client {cid}: {type(exc).__name__}: {exc}")


def run_load(clients: int = 16, requests: int = 1000, endpoint: str | None = None,
             curve: bool = False) -> dict[str, Any]:
    """Run the load; start a server process (CurveZMQ with ``curve``) unless ``endpoint`` is given."""
    from bridge import RigClient
    proc = None
    tmp = tempfile.TemporaryDirectory()
    keys = Path(tmp.name) / "client" if curve else None
    try:
        if endpoint is None:
            proc, endpoint = start_server(Path(tmp.name), curve)
        with RigClient(endpoint, timeout_s=10.0, curve_keys=keys) as probe:
            before = probe.status()
        lats: list[list[float]] = [[] for _ in range(clients)]
        bad: list = []
        errors: list[str] = []
        threads = [threading.Thread(target=_client, args=(endpoint, c, requests, lats[c], bad, errors, keys))
                   for c in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        with RigClient(endpoint, timeout_s=10.0, curve_keys=keys) as probe:
            after = probe.status()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()
        tmp.cleanup()
    all_lat = np.concatenate([np.asarray(x) for x in lats]) if any(lats) else np.zeros(1)
    sent = clients * requests
    replies = sum(len(x) for x in lats)
    executed = after["drives"] - before["drives"]
    p50, p99 = np.percentile(all_lat, [50, 99])
    return {"curve": curve, "clients": clients, "requests_per_client": requests, "rigs": 2, "drives_sent": sent,
            "replies": replies, "drives_executed": executed,
            "per_rig_executed": {r: after["rigs"][r]["drives"] - before["rigs"][r]["drives"] for r in ("a", "b")},
            "retries_answered_from_cache": after["cache_hits"] - before["cache_hits"],
            "lost": sent - replies, "duplicated": executed - sent, "mismatched": len(bad),
            "errors": errors[:5], "wall_s": wall, "throughput_drives_per_s": replies / wall,
            "latency_p50_s": float(p50), "latency_p99_s": float(p99)}


def run(quick: bool) -> dict[str, Any]:
    out = run_load(16, 200 if quick else 1000)
    cur = run_load(16, 200 if quick else 1000, curve=True)
    out["curve"] = {k: cur[k] for k in ("lost", "duplicated", "mismatched", "errors", "wall_s",
                                        "throughput_drives_per_s", "latency_p50_s", "latency_p99_s")}
    out["load_avg_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out["targets"] = {
        "lost": target(out["lost"], 0, at_least=False),
        "duplicated": target(out["duplicated"], 0, at_least=False),
        "mismatched": target(out["mismatched"], 0, at_least=False),
        "curve_lost_duplicated_mismatched": target(cur["lost"] + abs(cur["duplicated"]) + cur["mismatched"],
                                                   0, at_least=False),
    }
    return out
