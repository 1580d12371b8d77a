"""The ``nado`` command's malloc setting: keep freed memory in the process (glibc ``mallopt``).

The twin's packed step (:mod:`nado.twin._fast`) allocates and frees tensors of ~10 MB (B x 2H
floats) by the hundred; glibc's defaults hand many of them back to the kernel and take fresh
pages on the next allocation, and the page faults cost as much as the matmuls (measured: a 13 MB
copy 5.5 ms with faults, 0.7 ms without). :func:`tune_allocator` sets ``M_MMAP_THRESHOLD`` to
32 MiB (glibc's maximum) and ``M_TRIM_THRESHOLD`` to 2 GiB: the effect of a caching allocator
(jemalloc/tcmalloc) without one. Peak memory is unchanged; freed memory is reused instead of
returned. It changes the whole process, so the library never calls it: the ``nado`` command does,
once at start (``NADO_MALLOC_TUNE=0`` leaves malloc alone). A program using nado as a library may
call it itself. It also exports glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
(unless set), so the worker processes of ``nado run --jobs`` (:mod:`nado.pipeline.parallel`)
start with the same setting.
"""
from __future__ import annotations

import ctypes
import os
import sys

_TUNED: dict = {}


def tune_allocator() -> bool:
    """Apply the setting of the module docstring, once per process; returns whether it was applied."""
    if "done" not in _TUNED:
        _TUNED["done"] = False
        if os.environ.get("NADO_MALLOC_TUNE", "1") != "0" and sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)
                ok = libc.mallopt(-3, 32 * 2 ** 20) == 1          # M_MMAP_THRESHOLD
                ok = ok and libc.mallopt(-1, 2 ** 31 - 1) == 1    # M_TRIM_THRESHOLD
                _TUNED["done"] = bool(ok)
                if ok:   # the same for the worker processes a run starts (glibc reads these)
                    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(32 * 2 ** 20))
                    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(2 ** 31 - 1))
            except (OSError, AttributeError):                      # not glibc: nothing to do
                pass
    return _TUNED["done"]
