"""The stage cache of ``nado run``: each stage's outputs live in a folder named by a hash of its inputs.

A stage's key is the SHA-256 of the canonical JSON of ``{stage, inputs, version}``
where ``inputs`` holds everything the stage's result depends on: its settings,
its seed, the keys of the stages it consumes (so a change upstream changes
every key downstream) and a digest of the source code it runs (:func:`code_digest`). A folder ``CACHE/STAGE-KEY/`` is valid once its
``DONE`` marker exists (written last, atomically); an interrupted stage leaves
no marker and is redone. ``fresh=True`` ignores and replaces existing folders.

**Concurrency.** Several runs may share one cache (a sweep's trials, or a plain
``nado run`` beside a sweep): :meth:`StageCache.lookup` takes an exclusive
``fcntl.flock`` on ``CACHE/.STAGE-KEY.lock`` before it checks ``DONE`` and holds it
until :meth:`StageCache.finish` (or :meth:`StageCache.release_all`, which
:meth:`nado.pipeline.run.Runner.run` calls in a ``finally``). A run that needs a stage another
run is computing waits for it and then reuses it, instead of emptying the folder
the other is writing. The kernel drops the lock when a process dies, so a killed
run never blocks the others; its half-written folder has no ``DONE`` and is redone.
(POSIX only; the cache folder must be on a file system with working ``flock`` --
local disks, not every NFS.)

**Stage times.** ``DONE`` holds ``{"seconds": S}``, the wall time from the lookup that started the
stage to :meth:`StageCache.finish` (for a training stage resumed across sittings: the last
sitting's). :attr:`StageCache.seconds` gives it for every stage a run used, computed or reused, so
a report assembled from a cache still says what each stage cost when it ran (``None`` for folders
written before this was recorded).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ..io import jsonable, write_json_atomic

CACHE_VERSION = 1


def stage_key(stage: str, inputs: Any) -> str:
    """A 16-hex-digit key of a stage's inputs (canonical JSON; numpy values, sets and paths
    allowed). Anything else raises TypeError: an object's ``str()`` would make a key that changes
    with its memory address, or one that ignores what the object holds."""
    blob = json.dumps({"stage": stage, "inputs": inputs, "version": CACHE_VERSION},
                      sort_keys=True, default=jsonable, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_digest(*modules: str) -> str:
    """SHA-256 (16 hex digits) of the source files of ``modules`` (a package counts all its .py
    files): part of a stage's inputs, so a stage is redone when the code it runs changes."""
    import importlib.util
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            h.update(f"missing:{name}".encode())
            continue
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
        for f in files:
            h.update(str(f.relative_to(origin.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


class StageCache:
    """Folders of finished stages under ``root``; counts hits and misses for the report.

    Safe for concurrent runs (threads or processes) on one ``root``: see the module docstring.
    ``clock``: seconds for the stage times (injectable for tests).
    """

    def __init__(self, root: str | Path, *, fresh: bool = False,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.root, self.fresh, self.clock = Path(root), bool(fresh), clock
        self.hits: list[str] = []
        self.misses: list[str] = []
        self._seen: set[Path] = set()
        self._held: dict[Path, Any] = {}
        self._started: dict[Path, float] = {}
        self.seconds: dict[str, float | None] = {}    # folder name -> its stage's compute time (s)

    def folder(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def lookup(self, stage: str, inputs: Any) -> tuple[Path, bool]:
        """``(folder, done)``; a folder not done is emptied, ready for the stage to write.

        Blocks while another run computes the same stage. When ``done`` is False this cache
        holds the stage's lock until :meth:`finish` or :meth:`release_all`.
        """
        key = stage_key(stage, inputs)
        d = self.folder(stage, key)
        fh = self._held.pop(d, None)
        if fh is None:
            self.root.mkdir(parents=True, exist_ok=True)
            fh = open(self.root / f".{d.name}.lock", "a+")
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)   # waits while another run computes it
            except BaseException:
                fh.close()
                raise
        try:
            done = (d / "DONE").is_file()
            if done and self.fresh and d not in self._seen:
                done = False  # --fresh: recompute once per run, then reuse within the run
            if not done:
                if d.exists():
                    shutil.rmtree(d)
                d.mkdir(parents=True)
                (d / "inputs.json").write_text(json.dumps(inputs, indent=1, default=jsonable,
                                                          sort_keys=True))
        except BaseException:
            fh.close()
            raise
        if done:
            fh.close()                                    # finished folders are never rewritten
            self.hits.append(d.name)
            self.seconds[d.name] = _done_seconds(d)
        else:
            self._held[d] = fh
            self._started[d] = self.clock()
            self.misses.append(d.name)
        self._seen.add(d)
        return d, done

    def adopt(self, names: list[str]) -> None:
        """Count the finished folders ``names`` (folder names under ``root``, computed or reused by
        another process of this run: :mod:`nado.pipeline.parallel`) as already seen by this run,
        so ``fresh`` reuses them instead of computing them again."""
        self._seen.update(self.root / n for n in names)

    def finish(self, folder: Path, summary: dict | None = None) -> None:
        """Mark ``folder`` done (with an optional summary and the stage's seconds) and release
        its lock."""
        folder = Path(folder)
        started = self._started.pop(folder, None)
        seconds = None if started is None else round(self.clock() - started, 3)
        write_json_atomic(folder / "DONE", {**(summary or {}), "seconds": seconds})
        self.seconds[folder.name] = seconds
        fh = self._held.pop(folder, None)
        if fh is not None:
            fh.close()

    def release_all(self) -> None:
        """Drop the locks of stages left unfinished (a failed run); their folders are redone later."""
        for fh in self._held.values():
            fh.close()
        self._held.clear()


def _done_seconds(folder: Path) -> float | None:
    """The compute seconds a finished folder's ``DONE`` records (None: not recorded)."""
    try:
        value = json.loads((folder / "DONE").read_text()).get("seconds")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None
