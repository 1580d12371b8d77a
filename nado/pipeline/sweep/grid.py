"""Sweeps: one scenario, a grid of overrides times seeds, each trial a run of its own (``nado sweep``).

::

    nado sweep scenarios/quickstart.toml --grid task.visibility=[25],[20] \\
        --grid network.nodes=16,32 --seeds 3 --out sweeps/vis --threads 1

**Trials.** Each ``--grid KEY=V1,V2,...`` names a dotted scenario key (``section.key``,
``twins.sde.gan_iters``) and its values, written as TOML values (``4``, ``0.01``,
``[25]``, ``"sde"``; a bare word is a string) and separated by commas outside
brackets and quotes. The trials are the product of the grid times ``--seeds N``
seeds (``run.seed``, ``run.seed + 1``, ...). A key with a single value is a fixed
override for every trial. Overrides replace the key in the scenario and, when the
scenario's ``[budget]`` has the same key, there too (so they win under ``--quick``).

**Layout** of ``--out DIR``: ``trials/NAME/`` per trial (``trial.toml`` = the
scenario it ran, with paths made absolute and ``run.cache`` the shared cache, so
``nado run trials/NAME/trial.toml`` reruns it; ``trial.json``; the run folder's
``results.json``, ``report.md``, figures; ``error.json`` if it failed), the shared
stage cache ``cache/`` (``--cache`` to use another), ``sweep.json`` (grid, seeds,
the last invocation's counts), ``failures.json``, and the table and figures of
:mod:`nado.pipeline.sweep.table`.

**Sharing stages.** Every trial uses the one cache, keyed by each stage's inputs
(:mod:`nado.pipeline.cache`): trials that differ only in network or training settings
share the dataset and the twin fits. :class:`nado.pipeline.cache.StageCache`
is safe for concurrent trials (a file lock per stage).

**Resume.** A trial whose folder holds ``results.json`` and the same ``trial.toml``
is done and skipped. A failed trial is recorded in ``failures.json`` (its error also
in the table's ``error`` column) and skipped by later invocations until
``--retry-failed`` reruns it; trials never attempted run in either case. A trial
whose scenario changed (another ``trial.toml``) runs again.

**Engines.** With Ray installed (``pip install nado[ray]``) trials are Ray tasks
declaring ``num_cpus = --threads``; each pins torch to that many threads. A local
Ray instance is started (``--cpus`` CPUs, default all) unless ``--address`` names
a running cluster (whose nodes must have nado installed). Without Ray, or with
``--serial``, trials run one after another in this process, and the command says so.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...errors import ConfigError
from ...io import write_bytes_atomic, write_json_atomic

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+$")
PATH_KEYS = (("station", "path"), ("task", "data_dir"))


# ------------------------------------------------------------------ grid and overrides
def split_values(text: str) -> list[str]:
    """Split ``text`` at commas outside ``[]``, ``{}`` and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"unbalanced brackets in {text!r}")
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quote or depth:
        raise ConfigError(f"unclosed {'quote' if quote else 'bracket'} in {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """A TOML value (``4``, ``0.5``, ``[25, 20]``, ``"x"``, ``true``); a bare word is a string."""
    if not text:
        raise ConfigError("empty value; write KEY=V1,V2 with a value between the commas")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", text):
            return text
        raise ConfigError(f"cannot read value {text!r}: write a TOML value (4, 0.5, [25], \"text\")") from None


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["KEY=V1,V2", ...]`` -> ``{KEY: [V1, V2]}`` (order kept); raises ConfigError naming the item."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.match(key):
            raise ConfigError(f"--grid {item!r}: write KEY=V1,V2,... with a dotted scenario key, "
                              "e.g. --grid train.lr=0.01,0.02")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        try:
            values = [parse_value(v) for v in split_values(rest)]
        except ConfigError as exc:
            raise ConfigError(f"--grid {key}: {exc}") from None
        if len(set(map(_canon, values))) != len(values):
            raise ConfigError(f"--grid {key}: a value repeats in {rest!r}")
        grid[key] = values
    return grid


def set_key(table: dict, key: str, value: Any) -> None:
    """Set dotted ``key`` in nested ``table`` (creating tables); ConfigError if a parent is not a table."""
    parts = key.split(".")
    node = table
    for i, p in enumerate(parts[:-1]):
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(parts[:i + 1])} is a value, not a table: cannot set {key}")
        node = nxt
    node[parts[-1]] = value


def has_key(table: dict, key: str) -> bool:
    node: Any = table
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return True


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of scenario tables ``raw`` with ``overrides`` set (mirrored into [budget] where set)."""
    out = json.loads(json.dumps(raw))
    for key, value in overrides.items():
        set_key(out, key, value)
        if not key.startswith("budget.") and has_key(out.get("budget", {}), key):
            set_key(out["budget"], key, value)
    return out


# ------------------------------------------------------------------ trials
@dataclass(frozen=True)
class Trial:
    """One point of the sweep: ``overrides`` (the swept keys and fixed ones) and ``seed``."""

    name: str
    keys: dict            # the swept (multi-valued) keys -> value
    overrides: dict       # every override, including run.seed
    seed: int


@dataclass
class SweepSpec:
    scenario: Path
    grid: dict[str, list[Any]]
    seeds: int = 1
    out: Path = Path("sweeps")
    cache: Path | None = None
    quick: bool = False
    threads: int = 1
    extra: dict = field(default_factory=dict)


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _fmt(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ""))


def trial_name(keys: dict[str, Any], seed: int) -> str:
    """A readable, filesystem-safe, deterministic folder name of a trial."""
    name = "__".join([f"{k}={_fmt(v)}" for k, v in keys.items()] + [f"seed={seed}"])
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "_", name)
    if len(safe) > 120 or safe != name:
        safe = safe[:100] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return safe


def expand(grid: dict[str, list[Any]], seeds: list[int]) -> list[Trial]:
    """The grid product times ``seeds``, seeds innermost."""
    swept = [k for k, v in grid.items() if len(v) > 1]
    fixed = {k: v[0] for k, v in grid.items() if len(v) == 1}
    trials = []
    for combo in itertools.product(*(grid[k] for k in swept)):
        keys = dict(zip(swept, combo))
        for s in seeds:
            trials.append(Trial(name=trial_name(keys, s), keys=keys,
                                overrides={**fixed, **keys, "run.seed": s}, seed=s))
    return trials


def seeds_for(raw: dict, n: int, grid: dict) -> list[int]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--seeds must be an integer >= 1, got {n!r}")
    if "run.seed" in grid:
        raise ConfigError("--grid run.seed: use --seeds N (seeds run.seed .. run.seed + N - 1) instead")
    base = raw.get("run", {}).get("seed", 0)
    if isinstance(base, bool) or not isinstance(base, int) or base < 0:
        raise ConfigError(f"run.seed must be an integer >= 0, got {base!r}")
    return [base + i for i in range(n)]


def absolute_paths(raw: dict, folder: Path) -> dict:
    """Paths of the scenario (station.path, task.data_dir; also in [budget]) made absolute."""
    for tables in (raw, raw.get("budget", {})):
        for section, key in PATH_KEYS:
            t = tables.get(section)
            if isinstance(t, dict) and isinstance(t.get(key), str) and t[key] != "builtin":
                p = Path(t[key]).expanduser()
                t[key] = str(p if p.is_absolute() else (folder / p).resolve())
    return raw


# ------------------------------------------------------------------ the sweep
class Sweep:
    """Trials of a sweep on disk; :meth:`run` runs the ones that need it (see the module docstring)."""

    def __init__(self, spec: SweepSpec, *, log: Callable[[str], None] | None = None) -> None:
        from ..scenario import dump_toml, read_toml, validate
        self.spec, self.log = spec, log or (lambda m: print(m, file=sys.stderr, flush=True))
        path = Path(spec.scenario)
        raw = read_toml(path)
        if not isinstance(spec.threads, int) or spec.threads < 1:
            raise ConfigError(f"--threads must be an integer >= 1, got {spec.threads!r}")
        self.out = Path(spec.out).resolve()
        self.cache = Path(spec.cache).resolve() if spec.cache else self.out / "cache"
        raw = absolute_paths(json.loads(json.dumps(raw)), path.resolve().parent)
        self.trials = expand(spec.grid, seeds_for(raw, spec.seeds, spec.grid))
        self.texts: dict[str, str] = {}
        for t in self.trials:   # validate every trial before any work
            tables = apply_overrides(raw, t.overrides)
            set_key(tables, "run.name", t.name)
            set_key(tables, "run.out", str(self.out / "trials"))
            set_key(tables, "run.cache", str(self.cache))
            text = dump_toml(tables)
            try:
                validate(tomllib.loads(text), quick=spec.quick, source=str(self.trial_dir(t) / "trial.toml"))
            except ConfigError as exc:
                raise ConfigError(f"trial {t.name}: {exc}") from None
            self.texts[t.name] = text

    def trial_dir(self, t: Trial) -> Path:
        return self.out / "trials" / t.name

    def failures(self) -> dict[str, Any]:
        p = self.out / "failures.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def state(self, t: Trial, failures: dict) -> str:
        """``done``, ``failed`` (recorded, same scenario) or ``pending``."""
        d = self.trial_dir(t)
        toml = d / "trial.toml"
        same = toml.is_file() and toml.read_text() == self.texts[t.name]
        if same and (d / "results.json").is_file():
            return "done"
        if same and t.name in failures:
            return "failed"
        return "pending"

    def specs(self, todo: list[Trial]) -> list[dict[str, Any]]:
        """Write each trial's folder (trial.toml, trial.json); the plain dicts :func:`run_trial` takes."""
        out = []
        for t in todo:
            d = self.trial_dir(t)
            d.mkdir(parents=True, exist_ok=True)
            for stale in ("results.json", "error.json"):
                (d / stale).unlink(missing_ok=True)
            write_bytes_atomic(d / "trial.toml", self.texts[t.name].encode())
            write_json_atomic(d / "trial.json", {"name": t.name, "keys": t.keys, "seed": t.seed,
                                                 "overrides": t.overrides, "quick": self.spec.quick,
                                                 "threads": self.spec.threads})
            out.append({"name": t.name, "toml": str(d / "trial.toml"), "run_dir": str(d),
                        "cache_dir": str(self.cache), "quick": self.spec.quick,
                        "threads": self.spec.threads})
        return out

    def run(self, *, retry_failed: bool = False, engine: str = "auto", address: str | None = None,
            cpus: int | None = None) -> dict[str, Any]:
        """Run the trials that need it, write the table and figures; return a summary dict.

        ``engine``: "auto" (Ray when installed, else serial), "ray" or "serial".
        Summary: ``trials``, ``ran`` (names run now), ``skipped`` (done before),
        ``failed`` (names failed, now or before), ``engine``, ``table``, ``seconds``.
        """
        from .engines import pick_engine
        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        failures = self.failures()
        states = {t.name: self.state(t, failures) for t in self.trials}
        todo = [t for t in self.trials if states[t.name] == "pending"
                or (retry_failed and states[t.name] == "failed")]
        skipped = [n for n, s in states.items() if s == "done"]
        kept_failed = [n for n, s in states.items() if s == "failed" and not retry_failed]
        self.log(f"sweep: {len(self.trials)} trials; {len(skipped)} done before, "
                 f"{len(kept_failed)} failed before{' (--retry-failed reruns them)' if kept_failed else ''}, "
                 f"{len(todo)} to run")
        engine_name, ran = "none", []
        if todo:
            engine_name, submit = pick_engine(engine, address=address, cpus=cpus, log=self.log)
            for res in submit(self.specs(todo), self.spec.threads):
                ran.append(res["name"])
                if res["status"] == "done":
                    failures.pop(res["name"], None)
                    self.log(f"  done   {res['name']} ({res['seconds']:.0f} s, cache hits "
                             f"{len(res.get('hits', []))}, misses {len(res.get('misses', []))})")
                else:
                    failures[res["name"]] = {k: res.get(k) for k in ("error", "traceback", "seconds")}
                    self.log(f"  FAILED {res['name']}: {res['error']}")
                write_json_atomic(self.out / "failures.json", failures)
        from .table import write_table
        failed = [t.name for t in self.trials if t.name in failures]
        table = write_table(self, failures)
        summary = {"trials": len(self.trials), "ran": ran, "skipped": skipped, "failed": failed,
                   "engine": engine_name, "table": table, "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(self.out / "sweep.json", {
            "scenario": str(Path(self.spec.scenario).resolve()), "grid": self.spec.grid,
            "seeds": self.spec.seeds, "quick": self.spec.quick, "threads": self.spec.threads,
            "cache": str(self.cache), "trials": [t.name for t in self.trials], "last": summary})
        self.log(f"sweep: ran {len(ran)}, skipped {len(skipped)}, failed {len(failed)}; "
                 f"table {table['csv']}")
        return summary


def run_sweep(scenario: str | Path, grid: dict[str, list[Any]] | list[str], *, seeds: int = 1,
              out: str | Path = "sweeps", cache: str | Path | None = None, quick: bool = False,
              threads: int = 1, retry_failed: bool = False, engine: str = "auto",
              address: str | None = None, cpus: int | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The callable form of ``nado sweep`` (``grid`` as a dict or as ``KEY=V1,V2`` strings)."""
    if isinstance(grid, list):
        grid = parse_grid(grid)
    sweep = Sweep(SweepSpec(Path(scenario), grid, seeds, Path(out), Path(cache) if cache else None,
                            quick, threads), log=log)
    return sweep.run(retry_failed=retry_failed, engine=engine, address=address, cpus=cpus)
