"""``nado collect``: gather a device dataset through the bus into an HDF5 file.

    nado collect --connect tcp://HOST:PORT --rig nra --out data.h5 \\
        [--sequences N --length T --repeats M R --resets K --seed S \\
         --active-range LO HI --batch B --mode sequences|long --reset-prob P --resume]
    nado collect --station builtin --rig nra --out data.h5 ...   # no separate server

``--station FILE`` (or ``builtin``) starts that station in this process on a
private ``inproc://`` endpoint, so collection still goes through the bus.
Defaults follow the paper's NRA recipe (20,000 x 20 dynamics, 1,000 x 100
repeats). An interrupted run is continued with the same command plus ``--resume``.
"""
from __future__ import annotations

import sys
import uuid


def register(sub) -> None:
    p = sub.add_parser("collect", help="collect a device dataset (HDF5) through the bus")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--connect", metavar="ENDPOINT", help="server endpoint, e.g. tcp://127.0.0.1:5555")
    src.add_argument("--station", metavar="FILE|builtin",
                     help="start this station in-process (builtin: emulated nra and asvi)")
    p.add_argument("--rig", help="rig name (default: the server's only rig)")
    p.add_argument("--out", required=True, metavar="DATA.h5", help="dataset file to write")
    p.add_argument("--sequences", type=int, default=20000, metavar="N", help="dynamics sequences (20000)")
    p.add_argument("--length", type=int, default=20, metavar="T", help="steps per sequence (20)")
    p.add_argument("--repeats", type=int, nargs=2, default=[1000, 100], metavar=("M", "R"),
                   help="M sequences driven R times each (1000 100)")
    p.add_argument("--resets", type=int, default=1000, metavar="K", help="reset samples (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of every input and drive (0)")
    p.add_argument("--active-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="skip the sweep and use this input range")
    p.add_argument("--sweep", type=int, nargs=3, metavar=("LEVELS", "REPEATS", "STEPS"),
                   help="active-range sweep size (default 65 16 20; costs LEVELS*REPEATS*STEPS steps "
                        "of instrument time: shrink it for slow rigs)")
    p.add_argument("--batch", type=int, default=500, help="experiments per drive (500)")
    p.add_argument("--mode", choices=("sequences", "long"), default="sequences",
                   help="independent sequences after resets, or one long sequence with sporadic resets")
    p.add_argument("--reset-prob", type=float, default=0.02,
                   help="long mode: probability of a reset before each row (0.02)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted collection in --out")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per-request timeout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from bridge import RigClient
    from ...data.collect import collect

    server = None
    endpoint = args.connect
    if args.station is not None:
        from bridge.station import serve
        endpoint = f"inproc://nado-collect-{uuid.uuid4().hex}"
        server = serve(None if args.station == "builtin" else args.station, endpoint)
    try:
        with RigClient(endpoint, args.rig, timeout_s=args.timeout) as client:
            ds = collect(client, args.out, sequences=args.sequences, length=args.length,
                         repeats=tuple(args.repeats), resets=args.resets, seed=args.seed,
                         active_range=tuple(args.active_range) if args.active_range else None,
                         batch=args.batch, mode=args.mode,
                         sweep=(dict(zip(("levels", "repeats", "steps"), args.sweep))
                                if args.sweep else None), reset_prob=args.reset_prob,
                         progress=not args.no_progress, resume=args.resume)
    finally:
        if server is not None:
            server.close()
    lo, hi = ds.active_lo, ds.active_hi
    units = ds.attrs.get("rig", {}).get("input", {}).get("units", "")
    print(f"wrote {args.out}: {ds.dynamics_inputs.shape[0]} x {ds.dynamics_inputs.shape[1]} dynamics, "
          f"{ds.repeats_outputs.shape[0]} x {ds.repeats_outputs.shape[1]} repeats, "
          f"{ds.reset_initial.shape[0]} resets; active range {lo.min():.4g}..{hi.max():.4g} {units}; "
          f"instrument time {ds.attrs.get('instrument_s', 0):.4g} s", file=sys.stderr)
    return 0
