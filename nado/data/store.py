"""The HDF5 layout of a device dataset, written incrementally and verified on load.

File layout (format ``nado.dataset`` version 1)::

    /                        attrs: format, format_version, layout (JSON),
                                    active_lo, active_hi (n_in,), one JSON text
                                    attribute per Dataset.attrs key (rig, seeds,
                                    versions, created, finished, instrument_s,
                                    plan, ...), attr_keys, and ``complete``
    /dynamics/inputs         (N, T, n_in)      float64
    /dynamics/outputs        (N, T, n_out)     float64
    /dynamics/initial        (N, n_out)        float64
    /dynamics/reset          (N,)              uint8 (1 = the row began with a reset)
    /repeats/inputs          (M, T, n_in)      float64
    /repeats/outputs         (M, R, T, n_out)  float64
    /repeats/initial         (M, R, n_out)     float64
    /reset/initial           (K, n_out)        float64
    /checksums/SECTION/NAME  rows (start, stop, sha256) of every block written

Each section group carries ``rows_done``: rows ``[0, rows_done)`` are committed.
A block is written as: data rows, then their sha256 (of the little-endian
C-ordered bytes), then ``rows_done``, then a flush, so an interruption loses at
most the block in flight and resuming rewrites it. The root attribute
``complete`` is set to true last, when every section is full; an unfinished file
is never read as a finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..io import jsonable

FORMAT = "nado.dataset"
FORMAT_VERSION = 1
_RESERVED = {"format", "format_version", "layout", "active_lo", "active_hi", "attr_keys", "complete"}
_SUM_DTYPE = np.dtype([("start", "<i8"), ("stop", "<i8"), ("sha256", "S64")])


@dataclass(frozen=True)
class Layout:
    """Sizes of every array: N dynamics rows of T_dyn steps, M x R repeats of T_rep, K resets."""

    n_dynamics: int
    t_dynamics: int
    n_repeats: int
    r_repeats: int
    t_repeats: int
    n_reset: int
    n_in: int
    n_out: int

    def shapes(self) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
        """``{section: {name: (shape, dtype)}}``; the first axis of each is the section's rows."""
        N, Td, M, R, Tr, K = (self.n_dynamics, self.t_dynamics, self.n_repeats, self.r_repeats,
                              self.t_repeats, self.n_reset)
        i, o = self.n_in, self.n_out
        return {
            "dynamics": {"inputs": ((N, Td, i), "<f8"), "outputs": ((N, Td, o), "<f8"),
                         "initial": ((N, o), "<f8"), "reset": ((N,), "u1")},
            "repeats": {"inputs": ((M, Tr, i), "<f8"), "outputs": ((M, R, Tr, o), "<f8"),
                        "initial": ((M, R, o), "<f8")},
            "reset": {"initial": ((K, o), "<f8")},
        }

    def rows(self, section: str) -> int:
        return {"dynamics": self.n_dynamics, "repeats": self.n_repeats, "reset": self.n_reset}[section]


def block_sha256(block: np.ndarray, dtype: str) -> bytes:
    """Hex sha256 of ``block`` as C-ordered bytes of ``dtype``."""
    return hashlib.sha256(np.ascontiguousarray(block, dtype=dtype).tobytes()).hexdigest().encode()


def _chunk_shape(shape: tuple[int, ...], itemsize: int, rows: int) -> tuple[int, ...] | None:
    if 0 in shape:
        return None
    per_row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if len(shape) > 1 else itemsize
    cap = max(1, (1 << 20) // max(per_row, 1))  # chunks of at most ~1 MiB
    return (max(1, min(rows, shape[0], cap)),) + tuple(shape[1:])


class DatasetWriter:
    """Create or reopen a dataset file and append committed blocks of rows.

    ``DatasetWriter(path, layout, attrs, resume=True, block_rows=...)``: a new file
    is created; an existing unfinished file with the same layout is reopened
    (``resume=True``) so writing continues after its committed rows; an existing
    finished file, a different layout, or ``resume=False`` with an unfinished
    file raise :class:`DatasetError`. Use as a context manager.
    """

    def __init__(self, path: str | Path, layout: Layout, attrs: dict[str, Any] | None = None, *,
                 resume: bool = True, block_rows: int = 256, plan_keys: tuple[str, ...] = ("plan",)):
        import h5py
        self.path = Path(path)
        self.layout = layout
        attrs = dict(attrs or {})
        if self.path.exists():
            if not resume:
                raise DatasetError(f"{self.path} exists; delete it, choose another --out, or resume "
                                   "with --resume")
            self._f = _open(self.path, "r+")
            self._check_resumable(attrs, plan_keys)
        else:
            # built beside the target and renamed into place: a kill while HDF5 writes the new
            # file's superblock leaves no file at PATH (never a truncated one), only .NAME.new,
            # which the next run overwrites
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.new")
            self._f = h5py.File(tmp, "w")  # default libver: no open-for-write flag a kill would leave
            self._create(attrs, block_rows)
            self._f.close()
            os.replace(tmp, self.path)
            self._f = _open(self.path, "r+")

    # -- setup ---------------------------------------------------------------
    def _create(self, attrs: dict[str, Any], block_rows: int) -> None:
        f = self._f
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["complete"] = False
        f.attrs["layout"] = json.dumps(asdict(self.layout))
        for section, arrays in self.layout.shapes().items():
            g = f.create_group(section)
            g.attrs["rows_done"] = 0
            for name, (shape, dtype) in arrays.items():
                itemsize = np.dtype(dtype).itemsize
                g.create_dataset(name, shape=shape, dtype=dtype,
                                 chunks=_chunk_shape(shape, itemsize, block_rows))
                f.require_group(f"checksums/{section}").create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=_SUM_DTYPE, chunks=(256,))
        self.set_attrs(attrs)
        f.flush()

    def _check_resumable(self, attrs: dict[str, Any], plan_keys: tuple[str, ...]) -> None:
        f = self._f
        if bool(f.attrs.get("complete", False)):
            self._f.close()
            raise DatasetError(f"{self.path} is already complete; delete it or choose another --out "
                               "to collect again")
        old = json.loads(str(f.attrs["layout"]))
        if old != asdict(self.layout):
            self._f.close()
            raise DatasetError(f"{self.path} was started with layout {old}, not {asdict(self.layout)}; "
                               "resume with the same settings or delete the file")
        for key in plan_keys:
            if key in attrs and key in f.attrs:
                stored = json.loads(str(f.attrs[key]))
                if stored != json.loads(json.dumps(attrs[key], default=jsonable)):
                    self._f.close()
                    raise DatasetError(f"{self.path} was started with {key}={stored}, not "
                                       f"{attrs[key]}; resume with the same settings or delete the file")

    # -- writing -------------------------------------------------------------
    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Store each key as a JSON text attribute (``active_lo``/``active_hi`` as arrays)."""
        f = self._f
        keys = set(json.loads(str(f.attrs.get("attr_keys", "[]"))))
        for key, value in attrs.items():
            if key in ("active_lo", "active_hi"):
                f.attrs[key] = np.asarray(value, dtype=np.float64).reshape(-1)
                continue
            if key in _RESERVED:
                raise DatasetError(f"attribute name {key!r} is reserved by the dataset format")
            f.attrs[key] = json.dumps(value, default=jsonable)
            keys.add(key)
        f.attrs["attr_keys"] = json.dumps(sorted(keys))

    def get_attr(self, key: str, default: Any = None) -> Any:
        if key not in self._f.attrs:
            return default
        if key in ("active_lo", "active_hi"):
            return np.asarray(self._f.attrs[key])
        return json.loads(str(self._f.attrs[key]))

    def done(self, section: str) -> int:
        """Committed rows of ``section``."""
        return int(self._f[section].attrs["rows_done"])

    def write(self, section: str, arrays: dict[str, np.ndarray],
              attrs: dict[str, Any] | None = None) -> int:
        """Append a block of rows to ``section`` right after its committed rows; return rows_done.

        ``attrs`` (e.g. the running ``instrument_s``) are stored in the same commit.
        """
        g = self._f[section]
        spec = self.layout.shapes()[section]
        if set(arrays) != set(spec):
            raise DatasetError(f"block for {section} must hold {sorted(spec)}, got {sorted(arrays)}")
        start = self.done(section)
        n = {int(np.shape(a)[0]) for a in arrays.values()}
        if len(n) != 1:
            raise DatasetError(f"block for {section} has arrays with different row counts {sorted(n)}")
        stop = start + n.pop()
        if stop > self.layout.rows(section):
            raise DatasetError(f"block for {section} overflows: rows {start}:{stop} of "
                               f"{self.layout.rows(section)}")
        for name, (shape, dtype) in spec.items():
            block = np.asarray(arrays[name])
            if block.shape[1:] != shape[1:]:
                raise DatasetError(f"{section}/{name} block has shape {block.shape}, rows of "
                                   f"{shape[1:]} expected")
            g[name][start:stop] = block
            sums = self._f[f"checksums/{section}/{name}"]
            keep = np.asarray(sums[:])
            keep = keep[keep["start"] < start]  # drop sums of a block rewritten after a resume
            row = np.array([(start, stop, block_sha256(block, dtype))], dtype=_SUM_DTYPE)
            keep = np.concatenate([keep, row])
            sums.resize((len(keep),))
            sums[:] = keep
        if attrs:
            self.set_attrs(attrs)
        g.attrs["rows_done"] = stop
        self._f.flush()
        return stop

    def finish(self, attrs: dict[str, Any] | None = None) -> None:
        """Write final attributes, then ``complete = True`` (last), and flush."""
        for section in self.layout.shapes():
            if self.done(section) != self.layout.rows(section):
                raise DatasetError(f"cannot finish {self.path}: {section} has {self.done(section)} of "
                                   f"{self.layout.rows(section)} rows")
        if attrs:
            self.set_attrs(attrs)
        self._f.flush()
        self._f.attrs["complete"] = True
        self._f.flush()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _open(path: Path, mode: str):
    import h5py
    try:
        f = h5py.File(path, mode)
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file ({exc}); delete it and collect again") from exc
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        f.close()
        raise DatasetError(f"{path} is not a nado dataset (format attribute missing or "
                           f"{fmt!r}); pass a file written by `nado collect`")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        f.close()
        raise DatasetError(f"{path} has dataset format version {version}; this nado reads version "
                           f"{FORMAT_VERSION}. Collect it again with this version")
    return f


def stored_plan(path: str | Path) -> tuple[bool, Any]:
    """``(complete, plan)`` of an existing dataset file (plan None when absent)."""
    f = _open(Path(path), "r")
    try:
        plan = json.loads(str(f.attrs["plan"])) if "plan" in f.attrs else None
        return bool(f.attrs.get("complete", False)), plan
    finally:
        f.close()


def read_file(path: str | Path, *, verify: bool = True, allow_incomplete: bool = False):
    """Read every array and attribute; return ``(arrays, attrs, layout, complete)``.

    ``arrays`` is ``{"section/name": ndarray}``. Raises :class:`DatasetError` for a
    missing file, an unfinished one (unless ``allow_incomplete``), or a block
    whose sha256 differs from the one recorded when it was written (the message
    names the array and its rows).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist; collect one with `nado collect`")
    f = _open(path, "r")
    try:
        complete = bool(f.attrs.get("complete", False))
        if not complete and not allow_incomplete:
            raise DatasetError(
                f"{path} is unfinished (collection was interrupted); resume it with "
                f"`nado collect ... --out {path} --resume` using the same settings, or delete it")
        layout = Layout(**json.loads(str(f.attrs["layout"])))
        arrays: dict[str, np.ndarray] = {}
        for section, spec in layout.shapes().items():
            done = int(f[section].attrs["rows_done"])
            for name, (_shape, dtype) in spec.items():
                key = f"{section}/{name}"
                try:
                    data = np.asarray(f[section][name][:done])
                except OSError as exc:
                    raise DatasetError(f"{path}: cannot read {key} ({exc}); the file is corrupt, "
                                       "collect it again") from exc
                if verify:
                    _verify(path, key, data, np.asarray(f[f"checksums/{key}"][:]), dtype, done)
                arrays[key] = data
        attrs: dict[str, Any] = {}
        for key in json.loads(str(f.attrs.get("attr_keys", "[]"))):
            attrs[key] = json.loads(str(f.attrs[key]))
        for key in ("active_lo", "active_hi"):
            arrays[key] = np.asarray(f.attrs[key], dtype=np.float64) if key in f.attrs else None
        return arrays, attrs, layout, complete
    finally:
        f.close()


def _verify(path: Path, key: str, data: np.ndarray, sums: np.ndarray, dtype: str, done: int) -> None:
    covered = 0
    for start, stop, digest in sorted(sums.tolist()):
        if start != covered or stop > done:
            raise DatasetError(f"{path}: checksums of {key} do not cover rows {covered}:{done}; the "
                               "file is corrupt, collect it again")
        if block_sha256(data[start:stop], dtype) != digest:
            raise DatasetError(f"{path}: checksum mismatch in {key} rows {start}:{stop} (chunk "
                               f"'{key}[{start}:{stop}]'); the file is corrupt, collect it again")
        covered = stop
    if covered != done:
        raise DatasetError(f"{path}: checksums of {key} cover rows 0:{covered} of {done}; the file "
                           "is corrupt, collect it again")
