"""``nado sweep``: one scenario run over a grid of overrides and seeds, resumable.

Modules: :mod:`.grid` (grid syntax, overrides, trials, :func:`run_sweep`),
:mod:`.engines` (serial or Ray), :mod:`.trial` (one trial in its own folder),
:mod:`.table` (``table.csv`` and figures over the trials).
"""
from .grid import Sweep, SweepSpec, Trial, apply_overrides, expand, parse_grid, run_sweep

__all__ = ["Sweep", "SweepSpec", "Trial", "apply_overrides", "expand", "parse_grid", "run_sweep"]
