"""Train and transfer quickstart-shaped networks on twins a run already fitted (no new data).

The measuring tool behind ``docs/classification.md``: it takes the ODE and SDE twins of a
finished ``nado run`` (its stage cache), builds the quickstart's digits task, trains the
networks with the ``[train]`` settings given on the command line (any ``TrainConfig`` key
as ``key=value`` TOML values), and transfers them to an emulated NRA built in-process with
the station's parameters (``--rig key=value``; default: the built-in station's NRA), the same
physics the bus serves. One JSON line per seed on stdout; ``--out`` appends them to a file.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/qs_train.py --cache runs/.nado-cache \
        --variants sde,ode augment='"remask"' lr=0.01 --seeds 0 1 2

(``--seeds`` takes several values: put the ``key=value`` settings before it.)

Twins: ``--cache DIR`` holds ``ode-nra-*/twin.pt`` and ``sde-nra-*/twin.pt`` (the newest of
each is used unless ``--ode``/``--sde`` name the files).
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
import torch


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _pairs(items):
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"expected key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def newest(cache: Path, prefix: str) -> Path:
    found = sorted(cache.glob(f"{prefix}-nra-*/twin.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no {prefix}-nra-*/twin.pt under {cache}; run the quickstart first")
    return found[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("runs/.nado-cache"))
    ap.add_argument("--ode", type=Path)
    ap.add_argument("--sde", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--task-seed", type=int, default=0, help="seed of the digits split and masking")
    ap.add_argument("--variants", default="sde,ode",
                    help="comma-separated: sde, ode (networks of twins), leaky, mlp (software)")
    ap.add_argument("--rig", action="append", default=[], help="an NRA station parameter key=value (repeatable)")
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path)
    ap.add_argument("train", nargs="*", help="TrainConfig keys key=value (TOML values)")
    a = ap.parse_args(argv)

    from emulator.nra import NRARig
    from nado.network.config import TrainConfig
    from nado.network.data import as_task_data
    from nado.network.train import evaluate, train_network, train_software
    from nado.network.transfer import transfer_metrics
    from nado.tasks.digits import make_digits_task
    from nado.twin import load_twin

    torch.set_num_threads(1)
    twins = {"ode": load_twin(a.ode or newest(a.cache, "ode")), "sde": load_twin(a.sde or newest(a.cache, "sde"))}
    t = make_digits_task("digits", visibility=25.0, n_train=a.n_train, seed=a.task_seed)
    task = as_task_data({"kind": "classification", "x_train": t.train_inputs, "y_train": t.train_labels,
                         "x_test": t.test_inputs[0], "y_test": t.test_labels, "n_classes": 10})
    rig_kw = _pairs(a.rig)
    rig = NRARig("nra", **rig_kw)
    base = {"nodes": [32, 32], "epochs": 30, "batch_size": 64, "lr": 0.01, "progress": False}
    base.update(_pairs(a.train))
    cfg = TrainConfig.from_dict(base)
    for seed in a.seeds:
        row = {"tag": a.tag, "seed": seed, "train": {k: v for k, v in _pairs(a.train).items()}, "rig": rig_kw}
        for v in a.variants.split(","):
            t0 = time.perf_counter()
            if v in ("leaky", "mlp"):
                net, hist = train_software(task, cfg, kind="leaky" if v == "leaky" else "static", seed=seed)
                row[v] = {"sim": evaluate(net, task, cfg, seed=seed)["accuracy"]}
            else:
                kind, noise = {"sde": ("sde", True), "ode": ("ode", False)}[v]
                c = replace(cfg, noise=noise)
                net, hist = train_network([twins[kind]] * len(c.nodes), task, c, seed=seed)
                r, _ = transfer_metrics(net, [rig] * len(c.nodes), task, c, seed=seed + 17)
                row[v] = {"sim": r["sim"]["accuracy"], "transfer": r["transfer"]["accuracy"]}
                row[v]["train"] = evaluate(net, task, c, "train", seed=seed + 5)["accuracy"]
                if v == "sde":
                    row[v]["sim_noise_free"] = evaluate(net, task, c, noise=False, seed=seed + 11)["accuracy"]
            row[v].update({"best_epoch": hist.get("best_epoch"), "final_loss": hist["loss"][-1],
                           "seconds": round(time.perf_counter() - t0, 1)})
        line = json.dumps(row)
        print(line, flush=True)
        if a.out:
            with a.out.open("a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
