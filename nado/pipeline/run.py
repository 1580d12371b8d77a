"""The main job: ``nado run SCENARIO.toml`` runs every stage of a scenario and writes a report.

Stages, in order (each cached by a hash of its inputs, see :mod:`nado.pipeline.cache`):

1. task data (loaded first, so a missing data file fails before any instrument time);
2. rigs: start the scenario's station in-process (``bridge.station.serve`` on an
   ``ipc://`` or ``inproc://`` endpoint) or attach to ``station.endpoint``; one
   ``bridge.RigClient`` per device kind, or a ``bridge.pool.RigPool`` for a kind named
   ``"pool:NAME"`` in ``[rigs]`` (see :func:`open_rigs`);
3. per device kind: active range + dataset (:func:`nado.data.collect.collect`), the SNR
   measured on its repeats set (:mod:`nado.data.snr`), optionally structured hold sequences
   added to the twins' training data (``[collect] holds``, :mod:`nado.data.supplement`), ODE and SDE twins
   (:func:`nado.twin.fit_ode`, :func:`nado.twin.fit_sde`, fitted on the dataset's
   train split), twin report on the held-out split (:mod:`nado.twin.report`);
4. networks per task condition (:mod:`nado.pipeline.networks`): the variants trained on
   twins, transferred to the rigs, baselines, cascade;
5. report: ``scenario.toml`` (resolved), ``results.json``, ``report.md`` and figures
   (:mod:`nado.pipeline.report`); TensorBoard event files when ``tensorboard`` is installed
   (:mod:`nado.tensorboard`; off with ``[run] tensorboard = false``).

:func:`run_scenario` is the callable form (``nado demo`` uses it).
"""
from __future__ import annotations

import contextlib
import hashlib
import platform
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..device import check_device_spec, resolve_device
from ..errors import ConfigError
from ..io import write_bytes_atomic, write_json_atomic
from .cache import StageCache, code_digest
from .scenario import Scenario, dump_toml, load_scenario


def run_scenario(path: str | Path, out: str | Path | None = None, fresh: bool = False,
                 quick: bool = False, *, cache_dir: str | Path | None = None,
                 progress: bool = True, device: str | None = None,
                 jobs: int | None = None) -> dict[str, Any]:
    """Run the scenario at ``path``; return the results dict (also written to ``OUT/results.json``).

    ``out``: the run folder (default ``run.out/run.name``, relative to the working directory);
    ``fresh``: ignore cached stages; ``quick``: merge the scenario's ``[budget]`` tables first;
    ``cache_dir``: the stage cache (default ``run.cache``); ``device``: replaces ``[run] device``;
    ``jobs``: replaces ``[run] jobs`` (task conditions in parallel processes,
    :mod:`nado.pipeline.parallel`).
    """
    sc = with_jobs(with_device(load_scenario(path, quick=quick), device), jobs)
    run_dir = Path(out) if out is not None else Path(sc.run.out) / sc.run.name
    cache = StageCache(Path(cache_dir) if cache_dir is not None else Path(sc.run.cache), fresh=fresh)
    return Runner(sc, run_dir, cache, progress=progress).run()


class Runner:
    """One run of one scenario (see the module docstring)."""

    def __init__(self, sc: Scenario, run_dir: Path, cache: StageCache, *, progress: bool = True):
        self.sc, self.run_dir, self.cache, self.progress = sc, Path(run_dir), cache, progress
        self.seed = sc.run.seed
        self.device = resolve_device(sc.run.device, "run.device")   # fails here, before any work
        self.results: dict[str, Any] = {
            "scenario": sc.to_dict(), "quick": sc.quick, "rigs": {}, "twins": {}, "networks": {},
            "conditions": {}, "timing": {}, "instrument_s": {}, "versions": versions(),
            "seeds": {"run": self.seed}, "cache": {},
            "device": str(self.device)}
        self.datasets: dict[str, Any] = {}
        self.twins: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.figures: dict[str, str] = {}
        self.twin_histories: dict[str, dict[str, Any]] = {}   # {kind: {ode, sde}} for TensorBoard
        self.computed_in_workers: list[str] = []   # cache folders this run's workers computed

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self.log(f"[{name}] ...")
        try:
            yield
        finally:
            self.results["timing"][name] = round(time.perf_counter() - t0, 3)
            self.log(f"[{name}] done in {self.results['timing'][name]:.1f} s")

    def log(self, msg: str) -> None:
        """Stage lines go to stderr (progress bars are separate, and follow ``progress``)."""
        import sys
        print(msg, file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        """Every stage, then the report; stage locks left by a failure are released at the end."""
        try:
            return self._run()
        finally:
            self.cache.release_all()

    def _run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.run_dir / "scenario.toml", dump_toml(self.sc.to_dict()).encode())
        with self.timed("task"):
            conditions = self.task_conditions()
        with open_rigs(self.sc) as (endpoint, clients):
            self.results["station"] = {"endpoint": endpoint,
                                       "started_here": endpoint is not None and not self.sc.station.endpoint,
                                       "pools": {k: self.sc.pool_name(k) for k in self.sc.kinds
                                                 if self.sc.pool_name(k) is not None}}
            for kind in self.sc.kinds:
                self.device_stages(kind, clients[kind])
            from .networks import run_networks
            with self.timed("networks"):
                self.results["jobs"] = jobs = min(self.sc.run.jobs, len(conditions))
                if jobs > 1:
                    import torch
                    from .parallel import compute_conditions
                    reused, computed = compute_conditions(
                        Runner, self.sc, [c.name for c in conditions], self.cache.root, jobs,
                        fresh=self.cache.fresh, adopt=self.cache.hits + self.cache.misses,
                        threads=torch.get_num_threads(), log=self.log)
                    self.cache.adopt(reused + computed)   # every condition's stages: now hits
                    self.computed_in_workers = computed
                run_networks(self, conditions, clients)
        self.results["instrument_s"]["total"] = float(sum(
            v for k, v in self.results["instrument_s"].items() if k != "total"))
        self.results["timing"]["total"] = round(time.perf_counter() - t0, 3)
        # stages this run's workers computed are hits here, but computed by this run
        hits = set(self.cache.hits)
        workers = [n for n in self.computed_in_workers if n in hits]
        self.results["cache"] = {"dir": str(self.cache.root),
                                 "hits": [n for n in self.cache.hits if n not in set(workers)],
                                 "misses": self.cache.misses + workers,
                                 "computed_in_workers": workers, "seconds": dict(self.cache.seconds)}
        from .report import write_report
        with self.timed("report"):
            self.results["files"] = write_report(self.run_dir, self.results, self.figures)
        write_json_atomic(self.run_dir / "results.json", self.results)
        from ..tensorboard import available, write_run_events
        if self.sc.run.tensorboard and available():
            write_run_events(self.run_dir, self.results, self.twin_histories)
        self.log(f"results: {self.run_dir / 'results.json'}  report: {self.run_dir / 'report.md'}")
        return self.results

    def task_conditions(self, names=None) -> list:
        """The scenario's task conditions (those named in ``names``, or all), each recorded in the
        results with its data's digest (the key of its stages)."""
        from ..tasks.adapt import build_conditions
        conditions = [c for c in build_conditions(self.sc) if names is None or c.name in names]
        for c in conditions:
            self.results["conditions"][c.name] = {"info": c.info}
        self.keys["task"] = {c.name: task_digest(c) for c in conditions}
        return conditions

    def compute_conditions(self, names) -> None:
        """Only the stages of the task conditions ``names``, into the cache, no report: the work
        of one worker process of :mod:`nado.pipeline.parallel` (the device stages are cache hits
        there: the run computed them before it started the workers)."""
        conditions = self.task_conditions(names)
        with open_rigs(self.sc) as (_, clients):
            for kind in self.sc.kinds:
                self.device_stages(kind, clients[kind])
            from .networks import run_networks
            run_networks(self, conditions, clients)

    # ------------------------------------------------------------------ device stages
    def device_stages(self, kind: str, client) -> None:
        """Collect, SNR, twins and twin report for one device kind."""
        from ..data.dataset import load_dataset, split_dataset
        sc = self.sc
        from bridge.datakeys import without_data_keys
        desc = without_data_keys(client.describe())   # the rig, not the endpoint it is served on
        ident = {"describe": desc, "station": station_identity(sc)}
        self.results["rigs"][sc.rig_name(kind)] = {"kind": kind, "rig": sc.rig_name(kind), "describe": desc}
        kw = sc.collect.for_kind(kind)
        with self.timed(f"collect.{kind}"):
            d, done = self.cache.lookup(f"collect-{kind}", {
                "rig": ident, "collect": kw, "seed": self.seed,
                "code": code_digest("nado.data.collect", "nado.data.active_range", "nado.data.store", "nado.data.dataset")})
            if not done:
                from ..data.collect import collect
                collect(client, d / "data.h5", seed=self.seed, progress=self.progress, **kw)
                self.cache.finish(d)
            ds = load_dataset(d / "data.h5")
        self.keys[f"collect.{kind}"] = d.name
        self.datasets[kind] = ds
        from ..data.snr import snr_from_repeats
        rig = self.results["rigs"][sc.rig_name(kind)]
        snr = snr_from_repeats(ds.repeats_outputs)
        rig.update({"snr": snr["snr"], "snr_detail": snr,
                    "active_range": [np.asarray(ds.active_lo).tolist(), np.asarray(ds.active_hi).tolist()],
                    "dataset": str(d / "data.h5"), "cached": done,
                    "instrument_s": float(ds.attrs.get("instrument_s", 0.0))})
        self.results["instrument_s"][f"collect.{kind}"] = rig["instrument_s"]
        self.log(f"  {kind}: SNR {rig['snr']:.2f}, active range {rig['active_range']}")
        train = split_dataset(ds, seed=0)["train"]
        data_key = d.name
        hk = sc.collect.holds_for(kind)
        if hk["holds"] > 0:
            train, data_key = self.holds_stage(kind, client, ds, train, data_key, hk)
        self.twins[kind] = self.fit_twins(kind, train, data_key)
        with self.timed(f"twin_report.{kind}"):
            from ..twin.report import write_report as twin_write_report
            rd, rdone = self.cache.lookup(f"twinreport-{kind}", {
                "ode": self.keys[f"ode.{kind}"], "sde": self.keys[f"sde.{kind}"],
                "code": code_digest("nado.twin.report", "nado.twin.metrics", "nado.twin.figures")})
            if not rdone:
                twin_write_report(self.twins[kind], ds, rd, seed=self.seed)
                self.cache.finish(rd)
            import json
            metrics = json.loads((rd / "twin_report.json").read_text())
        self.results["twins"].setdefault("by_kind", {})[kind] = metrics
        for png in sorted(rd.glob("*.png")):
            self.figures[f"{png.stem}_{kind}"] = str(png)
        if kind == primary_kind(sc):
            for k in ("ode", "sde"):
                self.results["twins"][k] = {**metrics.get(k, {}), "kind": kind}

    def holds_stage(self, kind, client, ds, train, data_key, hk):
        """Drive the structured supplement (:mod:`nado.data.supplement`), cached; append it to ``train``."""
        from ..data.supplement import drive_holds, with_holds
        with self.timed(f"holds.{kind}"):
            d, done = self.cache.lookup(f"holds-{kind}", {"data": data_key, "holds": hk, "seed": self.seed,
                                                         "code": code_digest("nado.data.supplement")})
            if not done:
                h = drive_holds(client, hk["holds"], hk["length"], ds.active_lo, ds.active_hi,
                                hold_max=hk["hold_max"], batch=hk["batch"], seed=self.seed)
                np.savez(d / "holds.npz", inputs=h["inputs"], outputs=h["outputs"], initial=h["initial"],
                         instrument_s=h["instrument_s"])
                self.cache.finish(d)
            with np.load(d / "holds.npz") as z:
                h = {k: z[k] for k in z.files}
        self.results["instrument_s"][f"holds.{kind}"] = float(h["instrument_s"])
        self.results["rigs"][self.sc.rig_name(kind)]["holds"] = {**hk, "cached": done}
        return with_holds(train, h), d.name

    def fit_twins(self, kind: str, train, data_key: str) -> dict[str, Any]:
        """ODE then SDE twin for ``kind`` (cached); returns ``{"ode": Twin, "sde": Twin}``."""
        from ..twin import config_from_dataset, fit_ode, fit_sde, load_twin, save_twin
        sc = self.sc
        arch = sc.twins.arch_for(kind)
        ode_arch = {k: v for k, v in arch.items() if k not in ("n_aux", "tau0", "tau_ratio")
                    and not (k == "method" and v not in ("euler", "rk4"))}
        sde_arch = {k: v for k, v in arch.items() if not (k == "method" and v not in ("euler", "heun"))}
        out, hist = {}, {}

        def fit_ode_twin():
            return fit_ode(train, config_from_dataset(train, "ode", **ode_arch), seed=self.seed,
                           progress=self.progress, device=self.device, **sc.twins.ode)

        def fit_sde_twin():
            oc = out["ode"].config
            cfg = config_from_dataset(train, "sde", **{**sde_arch, "n_delay": oc.n_delay,
                                                       "width": oc.width, "depth": oc.depth})
            return fit_sde(train, out["ode"], cfg, seed=self.seed, progress=self.progress,
                           device=self.device, **sc.twins.sde)

        stages = (("ode", {"data": data_key, "arch": ode_arch, "fit": sc.twins.ode}, fit_ode_twin),
                  ("sde", None, fit_sde_twin))
        for twin_kind, inputs, fit in stages:
            if inputs is None:  # the SDE twin's inputs: the ODE twin it was fitted on
                inputs = {"ode": self.keys[f"ode.{kind}"], "arch": sde_arch, "fit": sc.twins.sde}
            with self.timed(f"twin_{twin_kind}.{kind}"):
                d, done = self.cache.lookup(f"{twin_kind}-{kind}", {
                    **inputs, "seed": self.seed, "code": code_digest("nado.twin")})
                if not done:
                    twin, h = fit()
                    save_twin(twin, d / "twin.pt")
                    write_json_atomic(d / "history.json", h)
                    self.cache.finish(d)
                out[twin_kind] = load_twin(d / "twin.pt", map_location=self.device)
                hist[twin_kind] = _read_json(d / "history.json")
                self.keys[f"{twin_kind}.{kind}"] = d.name
        self.twin_histories[kind] = hist
        self.results.setdefault("twin_fits", {})[kind] = {
            k: {kk: v for kk, v in h.items() if isinstance(v, (int, float, str)) or kk == "best"}
            for k, h in hist.items()}
        return out


# ---------------------------------------------------------------------- helpers
def with_device(sc: Scenario, device: str | None) -> Scenario:
    """The scenario with ``device`` (``--device``, when given) as its ``[run] device``, checked
    (:func:`nado.device.check_device_spec`)."""
    if device is None:
        return sc
    return replace(sc, run=sc.run.model_copy(update={"device": check_device_spec(device, "--device")}))


def with_jobs(sc: Scenario, jobs: int | None) -> Scenario:
    """The scenario with ``jobs`` (``--jobs``, when given) as its ``[run] jobs``; at least 1."""
    if jobs is None:
        return sc
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be a whole number >= 1 (worker processes for the task "
                          f"conditions), got {jobs!r}")
    return replace(sc, run=sc.run.model_copy(update={"jobs": jobs}))


@contextlib.contextmanager
def open_rigs(sc: Scenario) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Start (or attach to) the station; yield ``(endpoint, {kind: client})``; close all after.

    A kind named ``"pool:NAME"`` in ``[rigs]`` gets a connected :class:`bridge.pool.RigPool`
    (:func:`bridge.pool.load_pool` on the scenario's or the station file's ``[pools.NAME]``;
    ``station.timeout_s`` unless the pool sets ``timeout_s``) instead of a ``RigClient``.
    The station is started only when some kind is not pooled (``endpoint`` is then None).
    """
    from bridge import RigClient
    server = None
    endpoint: str | None = None
    pooled = {k: sc.pool_name(k) for k in sc.kinds if sc.pool_name(k) is not None}
    if sc.station.endpoint:
        endpoint = sc.station.endpoint
    elif any(k not in pooled for k in sc.kinds):
        path = None if sc.station.path == "builtin" else sc.resolve_path(sc.station.path)
        if path is not None and not path.is_file():
            raise ConfigError(f"station.path: station file not found: {path}")
        tag = uuid.uuid4().hex[:12]
        endpoint = (f"ipc://{tempfile.gettempdir()}/nado-{tag}.sock" if sc.station.bind == "ipc"
                    else f"inproc://nado-{tag}")
        from bridge.station import serve
        server = serve(path, endpoint)
    clients: dict[str, Any] = {}
    try:
        for kind in sc.kinds:
            if kind in pooled:
                from bridge.pool import load_pool
                table = sc.pool_table(pooled[kind])
                clients[kind] = load_pool(table, pooled[kind], **(
                    {} if "timeout_s" in table else {"timeout_s": sc.station.timeout_s}))
            else:
                clients[kind] = RigClient(endpoint, sc.rig_name(kind), timeout_s=sc.station.timeout_s)
        yield endpoint, clients
    finally:
        for c in clients.values():
            c.close()
        if server is not None:
            server.close()
        if endpoint is not None and endpoint.startswith("ipc://") and server is not None:
            Path(endpoint[len("ipc://"):]).unlink(missing_ok=True)


def station_identity(sc: Scenario) -> dict[str, str]:
    """What identifies the rigs beyond their describe(): the station file's content or endpoint."""
    if sc.station.endpoint:
        return {"endpoint": sc.station.endpoint}
    if sc.station.path == "builtin":
        return {"station": "builtin"}
    p = sc.resolve_path(sc.station.path)
    return {"station": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def primary_kind(sc: Scenario) -> str:
    """The kind whose twins stand under ``twins.ode``/``twins.sde`` (nra when present)."""
    return "nra" if "nra" in sc.kinds else sc.kinds[-1]


def versions() -> dict[str, str]:
    import torch
    from .. import __version__
    return {"nado": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "platform": platform.platform()}


def task_digest(c) -> str:
    """SHA-256 over every array and setting of one task condition: its networks' cache keys
    change whenever its data do (whatever changed them), and only then - a run of one condition
    (say ``visibility = [20]``) reuses the stages of the same condition run beside others, so a
    long scenario can be run condition by condition, in parallel processes on one cache."""
    h = hashlib.sha256()
    h.update(c.name.encode())
    for k in sorted(c.data):
        v = c.data[k]
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v).encode())
    for x in c.test_sets:
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:16]


def _read_json(path: Path) -> Any:
    import json
    return json.loads(path.read_text()) if path.is_file() else {}
