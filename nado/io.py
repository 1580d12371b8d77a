"""Small file helpers shared by every stage: atomic writes (write, fsync, rename).

``write_bytes_atomic``, ``write_json_atomic``, ``save_npy_atomic`` (a ``.npy`` array) and
``savefig_atomic`` (a matplotlib figure): a reader (or a run killed mid-write) sees the old
file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (numpy scalars and arrays allowed)."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=jsonable) + "\n").encode())


def save_npy_atomic(path: str | os.PathLike, array: Any) -> None:
    """Atomically write ``array`` as a ``.npy`` file (``np.save`` to memory, then
    :func:`write_bytes_atomic`); ``path`` is used as given (no ``.npy`` appended)."""
    import io

    import numpy as np
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


def savefig_atomic(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """Atomically save a matplotlib ``fig`` to ``path`` (format from the suffix, e.g. ``.png``)."""
    import io
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=kwargs.pop("format", path.suffix.lstrip(".") or "png"), **kwargs)
    write_bytes_atomic(path, buf.getvalue())


def jsonable(obj: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars and arrays, paths."""
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
