"""``nado fit ode|sde DATA.h5 --out TWIN.pt``: fit a twin to a collected dataset.

    nado fit ode data.h5 --out twin_ode.pt [--epochs 40 --n-delay 5 --width 64 --depth 2]
    nado fit sde data.h5 --out twin_sde.pt --ode twin_ode.pt [--warm-iters 300 --gan-iters 300]

The dataset's test split (``nado.data.dataset.split_indices`` with ``--split-seed``)
is held out: fitting sees only the train and validation rows, and the twin
report later scores the test rows. The checkpoint's JSON records the rig's
description (so ``backend = "sde"`` can serve it), the dataset path, the split
seed, the ODE checkpoint an SDE was built on, and the fit's summary. ``--device`` picks the
torch device (default auto: CUDA when available); the checkpoint loads on any device.
"""
from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit a neural-ODE or neural-SDE twin to a dataset")
    p.add_argument("kind", choices=("ode", "sde"), help="twin kind")
    p.add_argument("dataset", metavar="DATA.h5", help="dataset written by `nado collect`")
    p.add_argument("--out", required=True, metavar="TWIN.pt", help="checkpoint (+ TWIN.json beside it)")
    p.add_argument("--ode", metavar="TWIN_ODE.pt", help="sde: take the drift from this ODE twin "
                   "(default: fit one first)")
    p.add_argument("--seed", type=int, default=0, help="fitting seed (0)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the held-out test split (0)")
    p.add_argument("--epochs", type=int, default=40, help="ode: epochs of multiple shooting (40)")
    p.add_argument("--window", type=int, help="ode: shooting window in steps (default min(T, 50))")
    p.add_argument("--warm-iters", type=int, default=300, help="sde: moment-matching iterations (300)")
    p.add_argument("--gan-iters", type=int, default=300, help="sde: WGAN-GP iterations (300)")
    p.add_argument("--fit-drift", action="store_true", help="sde: fine-tune the drift too")
    p.add_argument("--n-delay", type=int, help="delays in the embedding (default 5; 0 for spectra)")
    p.add_argument("--n-aux", type=int, help="sde: auxiliary noise variables (default 10)")
    p.add_argument("--width", type=int, help="MLP width (default 64)")
    p.add_argument("--depth", type=int, help="MLP hidden layers (default 2)")
    p.add_argument("--method", help="integration scheme: euler|rk4 (ode), euler|heun (sde)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .._stage import add_device
    add_device(p)
    p.set_defaults(func=run)


def _scalars(history: dict) -> dict:
    return {k: v for k, v in history.items() if isinstance(v, (int, float, str, bool))}


def run(args) -> int:
    import torch

    from ...data.dataset import load_dataset, without_test
    from ...device import resolve_device
    from ...errors import ConfigError
    from ...twin import config_from_dataset
    from ...twin.checkpoint import load_twin, save_twin
    from ...twin.fit_ode import fit_ode
    from ...twin.fit_sde import fit_sde

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    device = resolve_device(args.device or "auto", "--device")
    ds = load_dataset(args.dataset)
    fit_part = without_test(ds, seed=args.split_seed)
    overrides = {k: v for k, v in (("n_delay", args.n_delay), ("width", args.width),
                                   ("depth", args.depth), ("method", args.method)) if v is not None}
    if args.kind == "sde" and args.n_aux is not None:
        overrides["n_aux"] = args.n_aux
    extra = {"rig": ds.attrs.get("rig", {}), "dataset": str(Path(args.dataset).resolve()),
             "split_seed": args.split_seed, "seed": args.seed}
    progress = not args.no_progress
    if args.kind == "ode":
        config = config_from_dataset(fit_part, "ode", **overrides) if overrides else None
        twin, history = fit_ode(fit_part, config, seed=args.seed, epochs=args.epochs,
                                window=args.window, progress=progress, device=device)
    else:
        ode = None
        if args.ode:
            ode = load_twin(args.ode, map_location=device)
            if ode.config.kind != "ode":
                raise ConfigError(f"--ode {args.ode} is a {ode.config.kind} twin; pass an ODE twin")
            extra["ode_checkpoint"] = str(Path(args.ode).resolve())
        config = config_from_dataset(fit_part, "sde", **overrides) if overrides else None
        twin, history = fit_sde(fit_part, ode, config, seed=args.seed, warm_iters=args.warm_iters,
                                gan_iters=args.gan_iters, fit_drift=args.fit_drift, progress=progress,
                                device=device)
    extra["fit"] = _scalars(history)
    save_twin(twin, args.out, extra=extra)
    print(f"wrote {args.out} ({args.kind} twin; fit {extra['fit']})", file=sys.stderr)
    return 0
