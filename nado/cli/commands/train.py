"""``nado train SCENARIO.toml [--out DIR] [--twins DIR]``: train the networks on twins.

Trains the scenario's twin variants (``sde`` through SDE twins with noise on,
``ode`` through ODE twins) and software references (``mlp``, ``leaky``) on each
task condition; writes ``OUT/networks/CONDITION/VARIANT.pt`` and ``OUT/train.json``
(``{condition: {variant: {sim, history}}}``). See :mod:`nado.cli._stage`.
"""
from __future__ import annotations


def register(sub) -> None:
    from .._stage import stage_command
    stage_command(sub, "train", "train networks of twins (and software references) for a scenario", _run)


def _run(sc, conds, config, out, twins, clients) -> int:
    from ...io import write_json_atomic
    from ...pipeline.stages import train_stage
    results = {}
    for cond in conds:
        print(f"training {cond.name}: {', '.join(sc.variants.names)}", flush=True)
        results[cond.name] = train_stage(cond, twins, sc.network.layers, config, sc.variants.names,
                                         out / "networks" / cond.name, seed=sc.run.seed,
                                         device=sc.run.device, per_variant=sc.train_by_variant)
        for v, r in results[cond.name].items():
            print(f"  {v:6s} sim {r['sim']}")
    write_json_atomic(out / "train.json", results)
    print(f"wrote {out / 'train.json'}")
    return 0
