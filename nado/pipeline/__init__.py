"""The pipeline of a scenario: collect -> twins -> networks -> transfer / cascade -> report.

Modules: :mod:`.scenario` (the scenario file, validated; :mod:`._sections` its tables),
:mod:`.run` (:class:`Runner`: every stage in order, each cached), :mod:`.cache` (the
lock-safe stage cache and its keys), :mod:`.networks` (the network stages of a run),
:mod:`.stages` (the same stages for ``nado train | transfer | cascade``),
:mod:`.report` (``report.md`` and figures), :mod:`.sweep` (many runs over a grid).
"""
from .cache import StageCache, code_digest, stage_key
from .run import Runner, open_rigs, run_scenario
from .scenario import Scenario, load_scenario, validate

__all__ = ["StageCache", "code_digest", "stage_key", "Runner", "open_rigs", "run_scenario",
           "Scenario", "load_scenario", "validate"]
