"""``nado bench``: speed and memory targets, measured as ratios in one run.

Each section is a module in this package defining ``SECTION`` (its name, e.g.
``"bus"``) and ``run(quick: bool) -> dict``, or ``run(quick: bool, device: torch.device)``
for a section that computes with torch (``nado bench --device``). The dict holds the section's
measured figures and ``targets: {name: {value, target, met}}``; use
:func:`target` to build entries. Sections are discovered, so adding one
touches no other file.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable

__all__ = ["target", "sections"]


def target(value: float, goal: float, *, at_least: bool = True) -> dict[str, Any]:
    """One target entry: ``{value, target, met}``; ``at_least=False`` for upper bounds."""
    met = value >= goal if at_least else value <= goal
    return {"value": float(value), "target": (">= " if at_least else "<= ") + f"{goal:g}",
            "met": bool(met)}


def sections() -> dict[str, Callable[..., dict[str, Any]]]:
    """Map of section name -> ``run(quick, device)`` for every bench module (sections without
    a ``device`` parameter ignore it)."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "SECTION"):
            found[module.SECTION] = _with_device(module.run)
    return found


def _with_device(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    if "device" in inspect.signature(run).parameters:
        return lambda quick, device="cpu": run(quick, device=device)
    return lambda quick, device="cpu": run(quick)
