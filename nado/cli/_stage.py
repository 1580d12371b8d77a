"""What ``nado train``, ``nado transfer`` and ``nado cascade`` share: arguments and loading.

Each command takes the main job's scenario file::

    nado train    SCENARIO.toml [--out DIR] [--twins DIR] [--quick] [--no-progress] [--device D]
    nado transfer SCENARIO.toml [--out DIR] [--twins DIR] [--quick] [--device D]
    nado cascade  SCENARIO.toml [--out DIR] [--twins DIR] [--quick] [--device D]

``--out`` defaults to ``[run] out / [run] name``; trained weights go to
``OUT/networks/CONDITION/VARIANT.pt``, results to ``OUT/train.json``,
``OUT/transfer.json``, ``OUT/cascade.json``. ``--twins`` is a folder holding
``KIND-ode.pt`` / ``KIND-sde.pt``; without it the twins come from ``nado run``'s
stage cache (collected and fitted through the bus when not cached yet). ``--device`` replaces
``[run] device`` (see :mod:`nado.device`); the returned scenario carries the setting in use.
The scenario is read by :mod:`nado.pipeline.scenario` and the task built by
:mod:`nado.tasks.adapt`.
"""
from __future__ import annotations

import contextlib
from pathlib import Path


def add_common(p) -> None:
    p.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file of the main job")
    p.add_argument("--out", metavar="DIR", help="output folder (default: [run] out / [run] name)")
    p.add_argument("--twins", metavar="DIR", help="folder with KIND-ode.pt / KIND-sde.pt (default: nado run's stage cache)")
    p.add_argument("--quick", action="store_true", help="merge the scenario's [budget] tables (CI budget)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device(p)


def add_device(p) -> None:
    """``--device auto|cpu|cuda|cuda:N``: replaces the scenario's ``[run] device``."""
    p.add_argument("--device", metavar="DEVICE",
                   help="torch device: auto (CUDA when available), cpu, cuda or cuda:N "
                        "(default: the scenario's [run] device; auto where there is none)")


def stage_command(sub, name: str, help: str, body) -> None:
    """Add ``nado NAME SCENARIO.toml [--out DIR] [--twins DIR] [--quick] [--no-progress]``.

    Its ``func`` opens a :func:`session` and returns ``body(sc, conds, config, out, twins,
    clients)``: the one shape of ``nado train``, ``transfer`` and ``cascade``.
    """
    p = sub.add_parser(name, help=help)
    add_common(p)

    def run(args) -> int:
        with session(args) as ctx:
            return body(*ctx)
    p.set_defaults(func=run)


@contextlib.contextmanager
def session(args):
    """Yield ``(scenario, conditions, config, out_dir, twins, clients)`` for a command.

    The rigs are opened as ``nado run`` opens them (:func:`nado.pipeline.run.open_rigs`: the
    scenario's station served in-process, or ``[station] endpoint``). Twins come
    from ``--twins DIR`` when given, else from ``nado run``'s stage cache
    (``[run] cache``): collected and fitted there if not cached yet.
    """
    import torch

    from ..pipeline.run import Runner, open_rigs, with_device
    from ..pipeline.cache import StageCache
    from ..pipeline.scenario import load_scenario
    from ..device import resolve_device
    from ..tasks.adapt import build_conditions
    from ..pipeline.stages import load_twins_dir
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    sc = with_device(load_scenario(args.scenario, quick=args.quick), args.device)
    device = resolve_device(sc.run.device, "run.device")
    out = Path(args.out) if args.out else Path(sc.run.out) / sc.run.name
    out.mkdir(parents=True, exist_ok=True)
    config = sc.train_config(progress=not args.no_progress)
    conds = build_conditions(sc)
    with open_rigs(sc) as (_endpoint, clients):
        if args.twins:
            twins = load_twins_dir(Path(args.twins), sc.kinds, map_location=device)
        else:
            runner = Runner(sc, out, StageCache(Path(sc.run.cache)), progress=not args.no_progress)
            try:
                for kind in sc.kinds:
                    runner.device_stages(kind, clients[kind])
            finally:  # stage locks are held from lookup to finish: free them even on failure
                runner.cache.release_all()
            twins = runner.twins
        yield sc, conds, config, out, twins, clients
