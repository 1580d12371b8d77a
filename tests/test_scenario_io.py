"""Atomic writes of run-folder results (nado.io): arrays and figures land whole or not at all."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nado.io import save_npy_atomic, savefig_atomic


def test_save_npy_atomic_round_trips_and_leaves_no_temp(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    p = tmp_path / "targets_x.npy"
    save_npy_atomic(p, a)
    b = np.load(p)
    assert b.dtype == np.float32 and np.array_equal(a, b)
    assert [f.name for f in tmp_path.iterdir()] == ["targets_x.npy"]


def test_a_failed_replace_keeps_the_old_file_whole(tmp_path, monkeypatch):
    p = tmp_path / "targets_x.npy"
    save_npy_atomic(p, np.zeros(5))

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        save_npy_atomic(p, np.ones(1000))
    monkeypatch.undo()
    assert np.array_equal(np.load(p), np.zeros(5))
    assert [f.name for f in tmp_path.iterdir()] == ["targets_x.npy"]   # temp file removed


def test_savefig_atomic_writes_a_png(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    p = tmp_path / "fig.png"
    savefig_atomic(fig, p)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["fig.png"]


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    """Results shared in a lab are readable like any file written with open() (umask applies),
    not 0600 like the temporary file they are written through."""
    import os
    import stat

    from nado.io import write_json_atomic
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
