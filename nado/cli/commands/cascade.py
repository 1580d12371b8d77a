"""``nado cascade SCENARIO.toml [--out DIR] [--twins DIR]``: cascade learning vs direct training.

For each depth in ``[variants] depths`` (default 2 and 3), trains the network
directly on twins and by cascade learning (Fig. 4a: layer by layer, each new
layer fed the previous layer's recorded physical activities), transfers both to
the rigs and writes ``OUT/cascade.json``
(``{condition: {L2: {direct: {sim, transfer}, cascade: {...}}, ..., direct, cascade}}``).
"""
from __future__ import annotations


def register(sub) -> None:
    from .._stage import stage_command
    stage_command(sub, "cascade", "cascade learning vs direct training, after transfer", _run)


def _run(sc, conds, config, out, twins, clients) -> int:
    from ...io import write_json_atomic
    from ...pipeline.stages import cascade_stage, clients_by_layer
    results = {}
    cl = clients_by_layer(clients, sc.network.layers)
    for cond in conds:
        res = cascade_stage(cond, twins, sc.network.layers, config, sc.variants.depths, cl, seed=sc.run.seed,
                            per_variant=sc.train_by_variant)
        results[cond.name] = res
        for depth, r in res.items():
            if depth.startswith("L"):
                for v in ("direct", "cascade"):
                    print(f"{cond.name} {depth} {v:8s} sim {r[v]['sim']}  transfer {r[v]['transfer']}")
    write_json_atomic(out / "cascade.json", results)
    print(f"wrote {out / 'cascade.json'}")
    return 0
