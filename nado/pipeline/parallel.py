"""A scenario's task conditions in parallel worker processes (``[run] jobs``, ``nado run --jobs``).

After the device stages (collection and twins, shared by every condition), each task condition
(a visibility, say) trains and transfers its networks independently of the others. With
``jobs = N > 1`` and more than one condition, :func:`compute_conditions` hands the conditions to
``min(N, conditions)`` worker processes (``spawn``); each worker opens its own rigs
(:func:`nado.pipeline.run.open_rigs`: its own in-process station, or a connection to the same
endpoint or pool), computes its conditions' stages into the run's stage cache
(:meth:`nado.pipeline.run.Runner.compute_conditions`) and returns the cache folders it used. The
run then adopts those folders (:meth:`nado.pipeline.cache.StageCache.adopt`, so ``--fresh`` does
not redo them) and assembles every condition from the cache exactly as a run with ``jobs = 1``
would, report included.

Why processes: on a CPU the twin networks' kernels gain little from a second intra-op thread
(one 25,600 x 64 matmul: 1.2-1.5x on the project's 2-core machine), while two one-thread
processes each keep ~94 % of a lone process's matmul speed (``nado bench``, README "Where the
time of a paper-scale run goes"). So the workers split this process's torch threads between
them (``torch.get_num_threads() // workers``, at least 1 each). Results equal a sequential run
with that many threads to the last digit: every drive of a rig is seeded (``bridge.rig``), so a
transfer does not depend on what else the rig did, and each stage's seeds come from the scenario.
A different thread count changes floating-point sums, which training amplifies (RUN.md of
``results/quickstart``), so ``jobs`` is recorded in the results.

Concurrency contract: the workers share the stage cache under its per-stage locks
(:mod:`nado.pipeline.cache`); a worker that fails makes the run fail with an error naming its
conditions, after the other workers finish (their stages stay cached for the next run).
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import NadoError
from .cache import StageCache


class ConditionError(NadoError, RuntimeError):
    """A task condition's worker process failed; the message names the conditions and the cause."""


def pin_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch and the BLAS libraries started after this call (a
    worker process here, a sweep's trial in :mod:`nado.pipeline.sweep.trial`)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch
    torch.set_num_threads(int(threads))


def split(names: Sequence[str], workers: int) -> list[list[str]]:
    """``names`` dealt round-robin into ``workers`` non-empty lists (order kept within each)."""
    workers = max(1, min(int(workers), len(names)))
    return [list(names[i::workers]) for i in range(workers)]


def compute_conditions(runner: type, sc, names: Sequence[str], cache_root: Path, jobs: int, *,
                       fresh: bool, adopt: Sequence[str], threads: int,
                       log: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """Compute the stages of the conditions ``names`` in ``min(jobs, len(names))`` worker
    processes with ``threads // workers`` torch threads each (at least 1), each with a
    ``runner`` (:class:`nado.pipeline.run.Runner`, passed in so this module does not import the
    run that uses it) of the scenario ``sc``; ``adopt``: the cache folders this run already used
    (the device stages), which a ``fresh`` worker must reuse, not redo. Returns the cache folder
    names the workers used: ``(reused, computed)``. Raises :class:`ConditionError` when a worker
    fails."""
    groups = split(names, jobs)
    per_worker = max(1, int(threads) // len(groups))
    log(f"[conditions] {', '.join(names)} in {len(groups)} worker processes, "
        f"{per_worker} torch thread(s) each")
    specs = [{"runner": runner, "scenario": sc, "names": g, "cache": str(cache_root), "fresh": fresh,
              "adopt": list(adopt), "threads": per_worker} for g in groups]
    reused: list[str] = []
    computed: list[str] = []
    failed: list[str] = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(groups), mp_context=ctx) as pool:
        futures = [(spec["names"], pool.submit(run_worker, spec)) for spec in specs]
        for group, fut in futures:
            try:
                hits, misses = fut.result()
                reused += hits
                computed += misses
            except Exception as exc:  # noqa: BLE001 - reported below, after every worker ended
                failed.append(f"{', '.join(group)}: {type(exc).__name__}: {exc}")
    if failed:
        raise ConditionError("task conditions failed in their worker processes (the stages they "
                             "finished are cached; run again to resume):\n  " + "\n  ".join(failed))
    return reused, computed


def run_worker(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """One worker (see the module docstring): pin the threads, compute the conditions' stages
    into the shared cache, return the cache folder names it reused and computed. Stage lines go
    to stderr."""
    pin_threads(int(spec["threads"]))
    cache = StageCache(spec["cache"], fresh=bool(spec["fresh"]))
    cache.adopt(spec["adopt"])
    with tempfile.TemporaryDirectory(prefix="nado-condition-") as scratch:
        try:
            spec["runner"](spec["scenario"], Path(scratch), cache, progress=False).compute_conditions(
                spec["names"])
        finally:
            cache.release_all()
    return list(dict.fromkeys(cache.hits)), list(dict.fromkeys(cache.misses))
