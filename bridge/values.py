"""Checks of scalar configuration values (station tables, backend parameters): one set for bridge,
its backends and the emulators.

Each returns the value converted (``float`` / ``int``) or raises ``error`` (default
:class:`bridge.errors.StationError`; emulators pass their ``ConfigError``) with a message
naming the value: ``"{name} must be ..., got ..."``.
"""
from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from .errors import StationError


def as_float(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
             lo_open: bool = False, error: type[Exception] = StationError) -> float:
    """``value`` as a finite float in [lo, hi] (``(lo, hi]`` with ``lo_open``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise error(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise error(f"{name} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and v > hi:
        raise error(f"{name} must be <= {hi:g}, got {v:g}")
    return v


def positive(name: str, value: Any, *, error: type[Exception] = StationError) -> float:
    """``value`` as a finite float > 0."""
    return as_float(name, value, lo=0.0, lo_open=True, error=error)


def as_int(name: str, value: Any, *, lo: int | None = None, hi: int | None = None,
           error: type[Exception] = StationError) -> int:
    """``value`` as an int in [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise error(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise error(f"{name} must lie in {lo}..{hi}, got {v}")
    return v


def as_seed(name: str, value: Any, *, error: type[Exception] = StationError) -> int | None:
    """None, or an int in ``0..2**64-1`` (a seed)."""
    if value is None:
        return None
    return as_int(name, value, lo=0, hi=2**64 - 1, error=error)


def import_object(key: str, spec: str, *, form: str = "package.module:name",
                  error: type[Exception] = StationError) -> Any:
    """The object named by ``spec`` = ``package.module:attr`` (``attr`` may be dotted), for the
    setting ``key`` (e.g. ``rigs.NAME.device``); a clear ``error`` naming the key (and ``form``,
    the expected spelling) otherwise."""
    mod_name, _, attr = str(spec).partition(":")
    if not mod_name or not attr:
        raise error(f"{key} = {spec!r}: write {form}")
    try:
        obj = importlib.import_module(mod_name)
    except Exception as exc:
        raise error(f"{key} = {spec!r}: cannot import {mod_name} "
                    f"({type(exc).__name__}: {exc}); is it installed or on PYTHONPATH?") from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise error(f"{key} = {spec!r}: {mod_name} has no {attr}") from None
    return obj
