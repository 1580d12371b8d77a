"""``nado sweep SCENARIO.toml --grid KEY=V1,V2 [--grid ...] [--seeds N]``: a scenario over a grid, on Ray.

See :mod:`nado.pipeline.sweep.grid` for trials, layout, resume and engines. Exit status: 0 when
every trial is done, 1 when some failed (listed in ``OUT/failures.json``).
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a scenario over a grid of settings and seeds (Ray tasks "
                                     "when Ray is installed); one table and figures")
    p.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file (see scenarios/)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a dotted scenario key and its values as TOML values, e.g. train.lr=0.01,0.02 "
                        "or task.visibility=[25],[20]; repeatable (the trials are the product); "
                        "one value = a fixed override")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="seeds per grid point: run.seed .. run.seed + N - 1 (default 1)")
    p.add_argument("--out", default="sweeps/sweep", metavar="DIR",
                   help="sweep folder: trials/, cache/, table.csv/.md, figures (default sweeps/sweep)")
    p.add_argument("--cache", metavar="DIR", help="shared stage cache (default OUT/cache)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="CPU threads per trial: Ray num_cpus and torch threads (default 1)")
    p.add_argument("--address", metavar="ADDRESS", help="an existing Ray cluster (ray://host:10001 "
                                                      "or host:6379); default: start a local one")
    p.add_argument("--cpus", type=int, metavar="N", help="CPUs of the local Ray instance (default all)")
    p.add_argument("--serial", action="store_true",
                   help="run trials one after another in this process, even with Ray installed")
    p.add_argument("--retry-failed", action="store_true", help="rerun the trials that failed before")
    p.add_argument("--quick", action="store_true", help="merge the scenario's [budget] first (each trial)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...pipeline.sweep import run_sweep
    summary = run_sweep(args.scenario, args.grid, seeds=args.seeds, out=args.out, cache=args.cache,
                        quick=args.quick, threads=args.threads, retry_failed=args.retry_failed,
                        engine="serial" if args.serial else "auto", address=args.address,
                        cpus=args.cpus)
    print(f"{summary['trials']} trials: {len(summary['ran'])} run now, {len(summary['skipped'])} "
          f"already done, {len(summary['failed'])} failed")
    print(f"table: {summary['table']['csv']} and {summary['table']['md']}")
    for f in summary["table"]["figures"]:
        print(f"figure: {f}")
    if summary["failed"]:
        print(f"failed trials are listed with their errors in {summary['table']['csv']} and "
              "failures.json; rerun them with --retry-failed", file=sys.stderr)
        return 1
    return 0
