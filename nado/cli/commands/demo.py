"""``nado demo``: the main job, ``scenarios/quickstart.toml``, on the built-in emulated rigs.

It serves the emulated NRA in-process (through the bus, like any rig), finds its
active range, collects data, fits an ODE twin and an SDE twin, trains 2 x 48-node
networks through each, transfers them to the emulated device, compares with a
reservoir-computing baseline and a software leaky-integrator MLP, and writes
``runs/quickstart/`` (``results.json``, ``report.md``, figures). Stages are cached,
so a second ``make demo`` only prints. ``--quick`` uses the scenario's reduced
``[budget]`` (the CI path).
"""
from __future__ import annotations

from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[3] / "scenarios" / "quickstart.toml"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job (scenarios/quickstart.toml) on the built-in emulated rigs")
    p.add_argument("--scenario", default=None, metavar="SCENARIO.toml",
                   help=f"scenario to run (default: {QUICKSTART.name} of this checkout)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/quickstart)")
    p.add_argument("--quick", action="store_true", help="reduced budget: same code path, smaller numbers")
    p.add_argument("--fresh", action="store_true", help="ignore cached stages")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...errors import ConfigError
    from ...pipeline.run import run_scenario

    scenario = Path(args.scenario) if args.scenario else QUICKSTART
    if not scenario.is_file():
        raise ConfigError(f"scenario {scenario} not found; pass --scenario PATH "
                          "(the quickstart lives in the repository's scenarios/ folder)")
    results = run_scenario(scenario, out=args.out, fresh=args.fresh, quick=args.quick,
                           progress=not args.no_progress)
    print(summary(results))
    return 0


def summary(results: dict) -> str:
    """A short table: each variant's metric in simulation and after transfer."""
    lines = ["", "variant   simulation   after transfer   (accuracy, %)"]
    for variant, entry in results.get("networks", {}).items():
        sim = (entry.get("sim") or {}).get("accuracy")
        tr = (entry.get("transfer") or {}).get("accuracy")
        fmt = lambda v: f"{100 * v:10.1f}" if isinstance(v, (int, float)) else f"{'-':>10s}"
        lines.append(f"{variant:8s} {fmt(sim)}   {fmt(tr)}")
    snr = {k: v.get("snr") for k, v in results.get("rigs", {}).items() if isinstance(v, dict)}
    if snr:
        lines.append("measured SNR: " + ", ".join(
            f"{k} {v:.2f}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in snr.items()))
    return "\n".join(lines)
