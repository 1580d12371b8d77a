"""``backend = "replay"``: serve a recorded dataset as a rig.

::

    [rigs.nra_replay]
    backend = "replay"
    path = "runs/quickstart/nra.h5"   # written by `nado collect`

:class:`ReplayRig` answers a drive with what the rig measured when it was
driven with exactly those inputs: each experiment's ``(T, n_in)`` inputs must
equal (bit for bit, as float64) a recorded sequence, or the first ``T`` steps
of one (a rig is causal, so a recorded prefix is a valid answer). Where a
sequence was recorded several times (the dataset's repeats), ``seed`` picks
one of them (same seed, same answer); ``seed=None`` cycles through them.
Inputs it has not recorded are refused with ``BAD_INPUT`` naming the
experiment, and ``reset=False`` is refused (a recording has no state to
continue). ``instrument_s`` is 0: replaying touches no instrument.

Layout dependency: bridge may not import :mod:`nado`, so this module reads the
HDF5 file written by ``nado.datastore`` (format ``nado.dataset`` version 1)
directly with h5py: root attrs ``format``, ``format_version``, ``complete``,
``layout`` (JSON), ``attr_keys`` and ``rig`` (JSON description of the rig that
was recorded); groups ``dynamics/{inputs,outputs,initial,reset}`` and
``repeats/{inputs,outputs,initial}`` with attr ``rows_done``; per-block sha256
rows in ``checksums/SECTION/NAME`` (verified on load). Dynamics rows whose
``reset`` flag is 0 continue the previous row and are not served. If that
layout changes, change :func:`read_recordings` with it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput, StationError
from ..rig import DriveResult, check_inputs

FORMAT = "nado.dataset"
FORMAT_VERSION = 1


def _verify(path: Path, f: Any, key: str, data: np.ndarray, done: int) -> None:
    if f"checksums/{key}" not in f:
        raise StationError(f"replay file {path} has no checksums for {key}; collect it again")
    covered = 0
    for start, stop, digest in sorted(np.asarray(f[f"checksums/{key}"][:]).tolist()):
        block = np.ascontiguousarray(data[start:stop], dtype=data.dtype.newbyteorder("<"))
        if start != covered or hashlib.sha256(block.tobytes()).hexdigest().encode() != digest:
            raise StationError(f"replay file {path} is corrupt in {key} rows {start}:{stop}; "
                               "collect it again")
        covered = stop
    if covered != done:
        raise StationError(f"replay file {path}: checksums of {key} cover rows 0:{covered} of {done}")


def read_recordings(path: str | Path) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], dict]:
    """Read a finished dataset file; return ``(groups, description)``.

    ``groups``: a list of ``(inputs (T, n_in), outputs (Rk, T, n_out), initial (Rk, n_out))``,
    one per recorded sequence (repeats of a sequence stacked on the first axis).
    ``description``: the recorded rig's ``describe()`` (``{}`` if absent).
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise StationError(f"replay file {path} does not exist; record one with `nado collect`")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StationError(f"replay file {path} is not an HDF5 dataset ({exc})") from exc
    with f:
        if f.attrs.get("format") != FORMAT or int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise StationError(f"replay file {path} is not a {FORMAT} v{FORMAT_VERSION} file "
                               f"(format={f.attrs.get('format')!r}); record one with `nado collect`")
        if not bool(f.attrs.get("complete", False)):
            raise StationError(f"replay file {path} is unfinished; resume its collection first")
        keys = json.loads(str(f.attrs.get("attr_keys", "[]")))
        desc = json.loads(str(f.attrs["rig"])) if "rig" in keys and "rig" in f.attrs else {}

        def section(name: str, parts: tuple[str, ...]) -> dict[str, np.ndarray]:
            done = int(f[name].attrs["rows_done"])
            out = {}
            for part in parts:
                data = np.asarray(f[name][part][:done])
                _verify(path, f, f"{name}/{part}", data, done)
                out[part] = data
            return out

        dyn = section("dynamics", ("inputs", "outputs", "initial", "reset"))
        rep = section("repeats", ("inputs", "outputs", "initial"))
    groups = []
    for i in np.flatnonzero(dyn["reset"].astype(bool)):
        groups.append((dyn["inputs"][i], dyn["outputs"][i][None], dyn["initial"][i][None]))
    for m in range(rep["inputs"].shape[0]):
        groups.append((rep["inputs"][m], rep["outputs"][m], rep["initial"][m]))
    return groups, desc


class ReplayRig:
    """A rig that answers from a recording; see the module docstring.

    ``ReplayRig(name, *, path)``: ``path`` is a finished ``nado collect`` file.
    """

    def __init__(self, name: str = "replay", *, path: str | Path):
        self.name = name
        self.path = Path(path)
        groups, recorded = read_recordings(self.path)
        if not groups:
            raise StationError(f"replay file {self.path} holds no sequence that starts from a reset")
        self._groups = groups
        self._cursor: dict[bytes, int] = {}
        self._by_length: dict[int, dict[bytes, list[tuple[int, int]]]] = {}
        n_in = int(groups[0][0].shape[-1])
        n_out = int(groups[0][1].shape[-1])
        every = np.concatenate([g[0].reshape(-1, n_in) for g in groups])
        rec_in = dict(recorded.get("input") or {})
        rec_out = dict(recorded.get("output") or {})
        self._desc = {
            "name": name, "kind": recorded.get("kind", "replay"), "backend": "replay",
            "source": f"replay://{self.path}", "emulated": True,
            "input": {"dims": [n_in], "units": rec_in.get("units", ""),
                      "min": float(every.min()), "max": float(every.max())},
            "output": {"dims": [n_out], "units": rec_out.get("units", "")},
            "step_s": recorded.get("step_s", 0.0),
            "recorded": {"rig": recorded.get("name"), "backend": recorded.get("backend"),
                         "sequences": len(groups),
                         "steps": sorted({int(g[0].shape[0]) for g in groups})},
        }

    def describe(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._desc))

    def _index(self, T: int) -> dict[bytes, list[tuple[int, int]]]:
        """Sequences (or prefixes) of length T: inputs bytes -> [(group, recording)]."""
        if T not in self._by_length:
            idx: dict[bytes, list[tuple[int, int]]] = {}
            for g, (inp, out, _init) in enumerate(self._groups):
                if inp.shape[0] >= T:
                    key = np.ascontiguousarray(inp[:T], dtype="<f8").tobytes()
                    idx.setdefault(key, []).extend((g, r) for r in range(out.shape[0]))
            self._by_length[T] = idx
        return self._by_length[T]

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        """Answer ``(B, T, n_in)`` inputs from the recording; ``BadInput`` for unrecorded ones."""
        x = check_inputs(inputs, self._desc)
        if not reset:
            raise BadInput(f"replay rig '{self.name}' cannot continue a previous drive (reset=False): "
                           "a recording has no live state; drive with reset=True")
        B, T, _ = x.shape
        index = self._index(T)
        outputs = np.empty((B, T, self._desc["output"]["dims"][0]))
        initial = np.empty((B, outputs.shape[2]))
        for b in range(B):
            key = np.ascontiguousarray(x[b], dtype="<f8").tobytes()
            hits = index.get(key)
            if not hits:
                raise BadInput(
                    f"replay rig '{self.name}' has no recording of experiment {b}'s inputs "
                    f"({T} steps starting {x[b, :3, 0].round(6).tolist()}...); it answers only the "
                    f"{len(self._groups)} sequences recorded in {self.path} (or their first steps): "
                    "drive those, or serve the real or emulated rig")
            if seed is None:
                k = self._cursor.get(key, 0)
                self._cursor[key] = k + 1
            else:
                k = int(np.random.default_rng([int(seed) & 0xFFFFFFFF, b]).integers(len(hits)))
            g, r = hits[k % len(hits)]
            outputs[b] = self._groups[g][1][r, :T]
            initial[b] = self._groups[g][2][r]
        return DriveResult(outputs=outputs, initial=initial, instrument_s=0.0)
