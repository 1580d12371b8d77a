"""The stage cache of ``nado run``: each stage's outputs live in a folder named by a hash of its inputs.

A stage's key is the SHA-256 of the canonical JSON of ``{stage, inputs, version}``
where ``inputs`` holds everything the stage's result depends on: its settings,
its seed, the keys of the stages it consumes (so a change upstream changes
every key downstream) and a digest of the source code it runs (:func:`code_digest`). A folder ``CACHE/STAGE-KEY/`` is valid once its
``DONE`` marker exists (written last, atomically); an interrupted stage leaves
no marker and is redone. ``fresh=True`` ignores and replaces existing folders.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from .io import write_json_atomic

CACHE_VERSION = 1


def stage_key(stage: str, inputs: Any) -> str:
    """A 16-hex-digit key of a stage's inputs (canonical JSON; numpy values allowed)."""
    blob = json.dumps({"stage": stage, "inputs": inputs, "version": CACHE_VERSION},
                      sort_keys=True, default=_default, separators=(",", ":"))
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


def _default(obj: Any) -> Any:
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


class StageCache:
    """Folders of finished stages under ``root``; counts hits and misses for the report."""

    def __init__(self, root: str | Path, *, fresh: bool = False) -> None:
        self.root, self.fresh = Path(root), bool(fresh)
        self.hits: list[str] = []
        self.misses: list[str] = []
        self._seen: set[Path] = set()

    def folder(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def lookup(self, stage: str, inputs: Any) -> tuple[Path, bool]:
        """``(folder, done)``; a folder not done is emptied, ready for the stage to write."""
        key = stage_key(stage, inputs)
        d = self.folder(stage, key)
        done = (d / "DONE").is_file()
        if done and self.fresh and d not in self._seen:
            done = False  # --fresh: recompute once per run, then reuse within the run
        if done:
            self.hits.append(d.name)
        else:
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            (d / "inputs.json").write_text(json.dumps(inputs, indent=1, default=_default, sort_keys=True))
            self.misses.append(d.name)
        self._seen.add(d)
        return d, done

    def finish(self, folder: Path, summary: dict | None = None) -> None:
        """Mark ``folder`` done (with an optional summary)."""
        write_json_atomic(folder / "DONE", summary or {})
