"""Bench section ``pool``: throughput of one large drive on pools of 1, 2 and 3 emulated NRA rigs.

Each rig is the built-in emulated NRA (backend ``physics.nra``) in its own server
process (``nado rig serve STATION.toml --bind tcp://127.0.0.1:*``), on the
``realtime`` clock: a drive really takes its instrument time divided by ``speed``,
so the instruments, not the CPU, are the limit, as in a lab. The drive: B
experiments of T = 20 steps (B = 384, 192 with ``quick``), ``seed=None``; one
warm-up drive first lets the pool measure each member's speed. Throughput =
experiments per wall second of the drive through :class:`bridge.pool.RigPool`.
Target: three rigs at least 2.5x one rig.

:func:`spawn_servers` / :func:`stop_servers` start and stop such server processes
(also used by the pool tests). Rigs are built by ``bridge.station`` in those
processes; nado never imports the emulator.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import target

SECTION = "pool"

STATION = """\
[rigs.nra]
backend = "physics.nra"
seed = {seed}
sample_seed = 7
clock = "{clock}"
speed = {speed}
"""


def spawn_servers(n: int, *, speed: float = 40.0, clock: str = "realtime", seed: int = 1,
                  folder: str | Path | None = None, timeout_s: float = 60.0
                  ) -> list[tuple[subprocess.Popen, str]]:
    """Start ``n`` server processes, each serving one emulated NRA named ``nra``.

    All members are the same device (``sample_seed`` 7, noise ``seed``); returns
    ``[(process, endpoint)]`` once each prints its endpoint. Stop with :func:`stop_servers`.
    """
    folder = Path(folder or tempfile.mkdtemp(prefix="nado-pool-"))
    station = folder / "station.toml"
    station.write_text(STATION.format(seed=seed, clock=clock, speed=float(speed)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "nado.cli", "rig", "serve", str(station),
                               "--bind", "tcp://127.0.0.1:*"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env) for _ in range(n)]
    out = []
    try:
        for p in procs:
            line = _read_line(p, timeout_s)
            endpoint = next((w.rstrip(";,") for w in line.split() if w.startswith("tcp://")), None)
            if endpoint is None:
                raise RuntimeError(f"rig server did not report its endpoint: {line!r}")
            out.append((p, endpoint))
    except BaseException:
        stop_servers([(p, "") for p in procs])
        raise
    return out


def _read_line(p: subprocess.Popen, timeout_s: float) -> str:
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                line = p.stdout.readline()
                if line:
                    return line
            if p.poll() is not None:
                raise RuntimeError(f"rig server exited with status {p.returncode} before serving")
        raise RuntimeError(f"rig server did not start within {timeout_s:g} s")
    finally:
        sel.close()


def stop_servers(servers: list[tuple[subprocess.Popen, str]]) -> None:
    """Terminate the processes (SIGTERM, then SIGKILL after 5 s) and close their pipes."""
    for p, _ in servers:
        if p.poll() is None:
            p.terminate()
    for p, _ in servers:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if p.stdout is not None:
            p.stdout.close()


def run(quick: bool) -> dict[str, Any]:
    from bridge.pool import RigPool
    B, T, speed = (192, 20, 40.0) if quick else (384, 20, 40.0)
    x = np.random.default_rng(0).uniform(20.0, 35.0, (B, T, 1))
    servers = spawn_servers(3, speed=speed)
    res: dict[str, Any] = {"experiments": B, "steps": T, "speed_factor": speed, "pools": {}}
    try:
        for n in (1, 2, 3):
            with RigPool([(ep, "nra") for _, ep in servers[:n]], timeout_s=60.0) as pool:
                pool.drive(x[: 8 * n])                      # warm-up: connect, measure speeds
                t0 = time.perf_counter()
                r = pool.drive(x)
                wall = time.perf_counter() - t0
                res["pools"][n] = {"wall_s": wall, "experiments_per_s": B / wall,
                                   "instrument_s": r.instrument_s,
                                   "shares": {k: v["experiments"] for k, v in pool.last["members"].items()}}
    finally:
        stop_servers(servers)
    one = res["pools"][1]["experiments_per_s"]
    res["scaling"] = {n: res["pools"][n]["experiments_per_s"] / one for n in (2, 3)}
    res["targets"] = {"three_rigs_vs_one": target(res["scaling"][3], 2.5)}
    return res
