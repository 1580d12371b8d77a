"""Small file helpers shared by every stage: atomic writes (write, fsync, rename), figures.

``write_bytes_atomic`` (the one atomic write), and on top of it ``write_json_atomic``,
``save_npy_atomic`` (a ``.npy`` array), ``save_torch_atomic`` (a torch state_dict) and
``savefig_atomic`` (a matplotlib figure): a reader (or a run killed mid-write) sees the old
file or the new one, never half of one. ``new_figure`` makes every figure the same way: a
matplotlib ``Figure`` on the Agg canvas, without pyplot (no global backend or figure state).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The file gets the permissions a plain ``open(path, "w")`` would (0666 less the umask), not
    the temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)      # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


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


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` (a state_dict: tensors in plain containers) with ``torch.save``."""
    import io

    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def new_figure(width_in: float, height_in: float, *, dpi: int = 110):
    """A matplotlib ``Figure`` of ``width_in`` x ``height_in`` inches on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def savefig_atomic(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """Atomically save a matplotlib ``fig`` to ``path`` (format from the suffix, e.g. ``.png``)."""
    import io
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=kwargs.pop("format", path.suffix.lstrip(".") or "png"), **kwargs)
    write_bytes_atomic(path, buf.getvalue())


def jsonable(obj: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars and arrays, paths, sets (sorted); anything else
    raises TypeError naming its type."""
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__} (convert it to plain data first)")
