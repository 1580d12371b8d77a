"""``nado twin report TWIN DATASET --out DIR``: validate twins on held-out data.

    nado twin report twin_sde.pt data.h5 --out report/ [--ode twin_ode.pt]

TWIN may be an ODE or an SDE twin; an SDE twin is compared with the ODE twin
given by ``--ode`` or, by default, the one it was fitted on (recorded by
``nado fit sde --ode``). Writes ``twin_report.json`` (one object per twin kind:
mean_error, std_ratio, autocov_error, w1, nrmse_by_horizon),
``twin_report_details.json`` and two PNG figures (see :mod:`nado.twin.report`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("twin", help="twin tools: report")
    tsub = p.add_subparsers(dest="twin_command", metavar="SUBCOMMAND")
    r = tsub.add_parser("report", help="validate twins on the dataset's held-out test split")
    r.add_argument("twin", metavar="TWIN.pt", help="an ODE or SDE twin checkpoint")
    r.add_argument("dataset", metavar="DATA.h5", help="dataset written by `nado collect`")
    r.add_argument("--out", required=True, metavar="DIR", help="output directory")
    r.add_argument("--ode", metavar="TWIN_ODE.pt", help="the ODE twin to compare (default: the one "
                   "the SDE twin was fitted on, when recorded)")
    r.add_argument("--samples", type=int, default=100, help="SDE trajectories per sequence (100)")
    r.add_argument("--split-seed", type=int, help="test split seed (default: the one used by nado fit)")
    r.add_argument("--seed", type=int, default=0, help="seed of the twin's noise (0)")
    r.add_argument("--max-sequences", type=int, help="score at most this many held-out sequences")
    r.add_argument("--no-figures", action="store_true", help="JSON only")
    r.set_defaults(func=run_report)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_report(args) -> int:
    from ...data.dataset import load_dataset
    from ...errors import ConfigError
    from ...twin.checkpoint import config_path, load_twin
    from ...twin.report import write_report

    twin = load_twin(args.twin)
    extra = json.loads(config_path(args.twin).read_text()).get("extra") or {}
    twins = {twin.config.kind: twin}
    ode_path = args.ode or (extra.get("ode_checkpoint") if twin.config.kind == "sde" else None)
    if ode_path:
        if not Path(ode_path).is_file():
            raise ConfigError(f"ODE twin {ode_path} not found; pass --ode TWIN_ODE.pt")
        ode = load_twin(ode_path)
        if ode.config.kind != "ode":
            raise ConfigError(f"--ode {ode_path} is a {ode.config.kind} twin; pass an ODE twin")
        twins["ode"] = ode
    split_seed = args.split_seed if args.split_seed is not None else int(extra.get("split_seed", 0))
    ds = load_dataset(args.dataset)
    res = write_report(twins, ds, args.out, figures=not args.no_figures, samples=args.samples,
                       seed=args.seed, split_seed=split_seed, max_sequences=args.max_sequences)
    print(json.dumps(res["twins"], indent=2))
    print(f"wrote {', '.join(res['files'].values())}", file=sys.stderr)
    return 0
