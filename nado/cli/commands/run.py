"""``nado run SCENARIO.toml [--out DIR] [--fresh] [--quick] [--cache DIR] [--check] [--jobs N]``:
the main job."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("run", help="run a scenario end to end: rigs, collect, twins, networks, "
                                   "transfer, baselines, report")
    p.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file (see scenarios/)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: run.out/run.name)")
    p.add_argument("--fresh", action="store_true", help="ignore cached stages and redo everything")
    p.add_argument("--quick", action="store_true",
                   help="merge the scenario's [budget] tables first (a reduced run, same code path)")
    p.add_argument("--cache", metavar="DIR", help="stage cache folder (default: run.cache)")
    p.add_argument("--check", action="store_true", help="validate the scenario and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines still go to stderr)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="task conditions (visibilities, ...) in N worker processes sharing this "
                        "process's torch threads (default: the scenario's [run] jobs, else 1)")
    from .._stage import add_device
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.check:
        from ...pipeline.scenario import load_scenario
        from ...pipeline.run import with_device, with_jobs
        sc = with_jobs(with_device(load_scenario(args.scenario, quick=args.quick), args.device),
                       args.jobs)
        print(f"{args.scenario}: valid (task {sc.task.kind}, layers {list(sc.network.layers)}, "
              f"variants {list(sc.variants.names)})")
        return 0
    from ...pipeline.run import run_scenario
    res = run_scenario(args.scenario, out=args.out, fresh=args.fresh, quick=args.quick,
                       cache_dir=args.cache, progress=not args.no_progress, device=args.device,
                       jobs=args.jobs)
    nets = res.get("networks", {})
    for v, r in nets.items():
        s, t = r.get("sim") or {}, r.get("transfer") or {}
        key = "accuracy" if "accuracy" in s else "mse"
        print(f"{v:8s} sim {key} {s.get(key, float('nan')):.4g}   transfer {key} "
              f"{t.get(key, float('nan')) if t else float('nan'):.4g}")
    print(f"report: {res['files']['report']}")
    return 0
