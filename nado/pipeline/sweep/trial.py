"""One trial of a sweep, as a plain function (a Ray task or an in-process call), and its result dict.

:func:`run_trial` takes a plain dict (``name``, ``toml`` = the trial's scenario file,
``run_dir``, ``cache_dir``, ``quick``, ``threads``), pins torch to ``threads`` CPU
threads, runs the scenario (its stage lines go to ``RUN_DIR/log.txt``) with :class:`nado.pipeline.run.Runner` on a
:class:`nado.pipeline.cache.StageCache`, and returns a plain dict: ``{"name", "status": "done" |
"failed", "seconds", "hits", "misses"}`` plus ``error``/``traceback`` when it failed
(also written to ``RUN_DIR/error.json``). It never raises for a failing scenario.

**Concurrent trials and the stage cache.** Trials share one
:class:`nado.pipeline.cache.StageCache`, which locks each stage from ``lookup`` to
``finish`` (see :mod:`nado.pipeline.cache`): a trial that needs a stage another trial is
computing waits for it and then reuses it.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from pathlib import Path
from typing import Any

from ...io import write_json_atomic
from ..cache import StageCache
from ..parallel import pin_threads


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one trial (see the module docstring); returns a plain result dict."""
    t0 = time.perf_counter()
    run_dir = Path(spec["run_dir"])
    out: dict[str, Any] = {"name": spec["name"], "pid": os.getpid()}
    cache = None
    try:
        pin_threads(int(spec.get("threads", 1)))
        from ..run import Runner, with_jobs
        from ..scenario import load_scenario
        # the sweep runs trials side by side; a trial's task conditions stay in its process
        sc = with_jobs(load_scenario(spec["toml"], quick=bool(spec.get("quick", False))), 1)
        cache = StageCache(spec["cache_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "log.txt", "w") as logf, contextlib.redirect_stderr(logf):
            Runner(sc, run_dir, cache, progress=bool(spec.get("progress", False))).run()
        out.update(status="done", hits=list(cache.hits), misses=list(cache.misses))
    except Exception as exc:  # noqa: BLE001 - a failed trial is data for the sweep, not a crash
        out.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=12))
        if cache is not None:
            out.update(hits=list(cache.hits), misses=list(cache.misses))
        write_json_atomic(run_dir / "error.json", out)
    finally:
        if cache is not None:
            cache.release_all()
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
