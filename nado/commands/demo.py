"""``nado demo``: serve the built-in station in-process and drive each rig once, through the bus.

An interim demo until the main job exists: it starts the station's rigs on an
``inproc://`` endpoint (a :class:`bridge.RigServer`), connects a
:class:`bridge.RigClient` per rig, drives a few random input sequences within
each rig's range (twice with the same seed, to show reproducibility) and prints
what came back. nado reaches the rigs only through the bus.
"""
from __future__ import annotations

import time
import uuid

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("demo", help="serve the built-in rigs in-process and drive each once through the bus")
    p.add_argument("station", nargs="?", metavar="STATION.toml", help="station file (default: built-in nra + asvi)")
    p.add_argument("--sequences", type=int, default=3, help="random input sequences per rig (default 3)")
    p.add_argument("--steps", type=int, default=20, help="input steps per sequence (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of inputs and rig noise (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from bridge import RigClient
    from bridge.station import serve

    endpoint = f"inproc://nado-demo-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(args.seed)
    with serve(args.station, endpoint) as server:
        print(f"serving {', '.join(server.rigs)} on {endpoint}")
        for name in server.rigs:
            with RigClient(endpoint, name, timeout_s=120.0) as client:
                d = client.describe()
                lo, hi = float(d["input"]["min"]), float(d["input"]["max"])
                n_in = int(d["input"]["dims"][0])
                u = rng.uniform(lo, hi, size=(args.sequences, args.steps, n_in))
                t0 = time.perf_counter()
                res = client.drive(u, seed=args.seed)
                wall_s = time.perf_counter() - t0
                again = client.drive(u, seed=args.seed)
                same = np.array_equal(res.outputs, again.outputs)
                out = res.outputs
                print(f"- {name}: {d.get('backend')} ({d.get('source')}), input {lo:g}..{hi:g} "
                      f"{d['input'].get('units', '')} x{n_in}, {out.shape[-1]} output(s) in "
                      f"{d['output'].get('units', '')}")
                print(f"    drove {u.shape[0]} x {u.shape[1]} steps: outputs {out.shape}, "
                      f"mean {out.mean():.4g}, std {out.std():.3g}, range {out.min():.4g}..{out.max():.4g}")
                print(f"    instrument time {res.instrument_s:.3g} s, wall {wall_s:.3g} s; "
                      f"same seed, same outputs: {'yes' if same else 'NO'}")
    return 0
