"""``nado transfer SCENARIO.toml [--out DIR] [--twins DIR]``: run trained networks on the rigs.

Loads ``OUT/networks/CONDITION/VARIANT.pt`` (from ``nado train``), drives the
scenario's rigs through the bus layer by layer (one batched drive per layer),
adds the reservoir baselines (``rc``, ``rc1``) and writes ``OUT/transfer.json``
(``{condition: {variant: {sim, transfer}}}``), printing sim vs transfer side by side.
"""
from __future__ import annotations


def register(sub) -> None:
    from .._stage import stage_command
    stage_command(sub, "transfer", "transfer trained networks to the rigs and compare with simulation", _run)


def _run(sc, conds, config, out, twins, clients) -> int:
    from ...io import write_json_atomic
    from ...pipeline.stages import clients_by_layer, transfer_stage
    results = {}
    cl = clients_by_layer(clients, sc.network.layers)
    for cond in conds:
        res = transfer_stage(cond, twins, sc.network.layers, config, sc.variants.names, cl,
                             out / "networks" / cond.name, seed=sc.run.seed, device=sc.run.device)
        results[cond.name] = res
        print(f"{cond.name}:")
        for v, r in res.items():
            print(f"  {v:6s} sim {r['sim']}  transfer {r['transfer']}")
    write_json_atomic(out / "transfer.json", results)
    print(f"wrote {out / 'transfer.json'}")
    return 0
