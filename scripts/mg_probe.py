"""Probe one Mackey-Glass training setting on cached twins; print t+5 MSE after transfer.

Used for the measurements in docs/regression.md. It reads the scenario, applies
overrides, loads the fitted twins from a run's stage cache (the newest
``sde-KIND-*`` folder per kind unless ``--twin KIND=DIR``), starts the scenario's
station in-process and trains/transfers one variant at one depth::

    OMP_NUM_THREADS=1 python scripts/mg_probe.py scenarios/mackey_glass_cascade.toml \
        --variant cascade --depth 3 --set train.epochs=40 --set 'network.pi=[{project=8},{},{}]'

``--set SECTION.KEY=VALUE`` takes a TOML value. Output: one JSON line with the
variant, depth, overrides, MSE at t+5 and averaged over horizons (series units)
in simulation and after transfer, and the wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np


def _override(sc_dict: dict, sets: list[str]) -> dict:
    for s in sets:
        key, _, val = s.partition("=")
        sec, _, name = key.partition(".")
        sc_dict.setdefault(sec, {})[name] = tomllib.loads(f"v = {val}")["v"]
    return sc_dict


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--variant", default="cascade")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=".nado-cache")
    ap.add_argument("--twin", action="append", default=[], help="KIND=DIR of a cached twin folder")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--readout", default="ridge", help="cascade readout: ridge | twin")
    a = ap.parse_args(argv)

    from nado.pipeline.scenario import load_scenario
    from nado.tasks.adapt import build_conditions
    from nado.twin import load_twin
    from nado.pipeline.run import open_rigs
    from nado.network import as_task_data, train_network
    from nado.network.cascade import run_cascade
    from nado.network.transfer import transfer_metrics

    path = Path(a.scenario)
    body = _override(tomllib.loads(path.read_text()), a.set)
    import os
    tmp = path.with_name(f".probe-{path.stem}-{os.getpid()}.toml")
    from tomli_w import dumps as dump_toml
    tmp.write_text(dump_toml(body))
    try:
        sc = load_scenario(tmp)
    finally:
        tmp.unlink()
    cond = build_conditions(sc)[0]
    std = float(cond.info["scale_std"])
    given = dict(t.split("=", 1) for t in a.twin)
    twins = {}
    for kind in sc.kinds:
        d = Path(given[kind]) if kind in given else max(Path(a.cache).glob(f"sde-{kind}-*"),
                                                         key=lambda p: p.stat().st_mtime)
        twins[kind] = load_twin(d / "twin.pt")
    L = a.depth
    layers = sc.network.layers[:L]
    base = sc.train_config(progress=False)
    cfg = replace(base, nodes=tuple(base.nodes[:L]),
                  pi=base.pi[:L] if isinstance(base.pi, (list, tuple)) else base.pi)
    task = as_task_data(cond.data)
    t0 = time.perf_counter()
    with open_rigs(sc) as (_, clients):
        cl = [clients[k] for k in layers]
        tw = [twins[k] for k in layers]
        extra = {}
        if a.variant == "cascade":
            net, info = run_cascade(tw, cl, task, cfg, seed=a.seed, readout=a.readout)
        elif a.variant == "direct":
            net, _ = train_network(tw, task, cfg, seed=a.seed)
        else:
            from nado.network.variants import Job, get, train_variant
            job = Job(task, cfg, {"sde": tw}, cl, a.seed)
            v = get(a.variant)
            extra = v.measure(train_variant(a.variant, job) if v.train else None, job, task, a.seed)
            net = None
        if net is not None:
            res, _ = transfer_metrics(net, cl, task, cfg, seed=a.seed + 5)
        else:
            res = extra
    f = std ** 2
    out = {"variant": a.variant, "depth": L, "readout": a.readout if a.variant == "cascade" else None, "seed": a.seed, "set": a.set,
           "wall_s": round(time.perf_counter() - t0, 1)}
    for col in ("sim", "transfer"):
        m = res.get(col)
        if m:
            out[f"{col}_t5"] = float(m["mse_by_horizon"]["5"]) * f
            out[f"{col}_mean"] = float(m["mse"]) * f
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
