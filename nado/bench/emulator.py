"""``nado bench`` section ``emulator``: how fast the emulated rigs run.

Builds the built-in station's rigs (``nra`` -> physics.nra, ``asvi`` ->
physics.asvi) through :mod:`bridge.station` (nado never imports the emulator)
and drives each directly with B = 4096 experiments of 20 random steps over its
active window (NRA 20-35 Oe, ASVI 100-215 Oe). Reports device-steps per second
(B * T / wall seconds) and the speed relative to the real instrument
(instrument_s / wall_s, where instrument_s is what the emulator's simpy timeline
says the real instrument would need). Targets: NRA >= 1e5 device-steps/s, ASVI
>= 1e4, both >= 1000x faster than the instrument. ``quick`` uses B = 1024.
"""
from __future__ import annotations

import time

import numpy as np

SECTION = "emulator"
WINDOWS = {"nra": (20.0, 35.0), "asvi": (100.0, 215.0)}
STEP_TARGETS = {"nra": 1e5, "asvi": 1e4}


def run(quick: bool) -> dict:
    from bridge.station import build_rigs, load_station
    from nado.bench import target

    rigs = build_rigs(load_station(None))
    B, T = (1024 if quick else 4096), 20
    out: dict = {"B": B, "T": T, "targets": {}}
    for name, (lo, hi) in WINDOWS.items():
        rig = rigs[name]
        n_in = int(rig.describe()["input"]["dims"][0])
        x = np.random.default_rng(0).uniform(lo, hi, (B, T, n_in))
        rig.drive(x[:8], seed=0)                                   # warm-up (tables, imports)
        t0 = time.perf_counter()
        res = rig.drive(x, seed=1)
        wall = time.perf_counter() - t0
        steps_per_s = B * T / wall
        ratio = res.instrument_s / wall
        out[name] = {"wall_s": wall, "instrument_s": res.instrument_s,
                     "device_steps_per_s": steps_per_s, "speedup_vs_instrument": ratio}
        out["targets"][f"{name}_device_steps_per_s"] = target(steps_per_s, STEP_TARGETS[name])
        out["targets"][f"{name}_speedup_vs_instrument"] = target(ratio, 1000.0)
    return out
