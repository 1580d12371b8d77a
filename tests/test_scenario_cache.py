"""The stage cache (nado.pipeline.cache) under concurrent runs: one cache, two runners, each stage
computed once; locks left by a failing run are released by Runner.run."""
from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest

from nado.pipeline.cache import StageCache


def _runner_process(root: str, tag: str, delay: float, counter: str) -> None:
    """A stand-in runner: three stages in order, each 'computed' (appending to counter) on a miss."""
    cache = StageCache(root)
    try:
        for stage in ("collect", "ode", "sde"):
            d, done = cache.lookup(stage, {"seed": 0})
            if not done:
                with open(counter, "a") as f:
                    f.write(f"{tag}:{stage}\n")
                (d / "part").write_text(tag)
                time.sleep(delay)                  # the other runner must wait, not empty the folder
                (d / "result").write_text(tag)
                cache.finish(d)
    finally:
        cache.release_all()


@pytest.mark.e2e
def test_two_runner_processes_on_one_cache_compute_each_stage_once(tmp_path):
    counter = tmp_path / "computed.txt"
    root = tmp_path / "cache"
    ctx = mp.get_context("spawn")                  # no fork of a threaded pytest
    procs = [ctx.Process(target=_runner_process, args=(str(root), tag, 0.3, str(counter)))
             for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = counter.read_text().split()
    assert sorted(line.split(":")[1] for line in lines) == ["collect", "ode", "sde"]   # once each
    for stage in ("collect", "ode", "sde"):
        d, = root.glob(f"{stage}-*")
        assert (d / "DONE").is_file() and (d / "result").read_text() == (d / "part").read_text()


def test_two_runner_threads_share_one_computation(tmp_path):
    computed: list[str] = []
    start = threading.Barrier(2)
    arrived = {t: threading.Event() for t in ("a", "b")}

    def runner(tag: str) -> None:
        cache = StageCache(tmp_path)
        start.wait()
        arrived[tag].set()
        d, done = cache.lookup("fit", {"x": 1})
        if not done:
            computed.append(tag)
            arrived["b" if tag == "a" else "a"].wait(10)    # the other one is at its lookup now
            (d / "model").write_text(tag)
            cache.finish(d)
        cache.release_all()

    ts = [threading.Thread(target=runner, args=(t,)) for t in ("a", "b")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert len(computed) == 1
    d, = tmp_path.glob("fit-*")
    assert (d / "model").read_text() == computed[0]


def test_lookup_twice_in_one_run_does_not_deadlock(tmp_path):
    cache = StageCache(tmp_path)
    d, done = cache.lookup("s", {"x": 1})
    d2, done2 = cache.lookup("s", {"x": 1})        # e.g. a retried stage: reuses the held lock
    assert d2 == d and not done and not done2
    cache.finish(d)
    assert cache._held == {}


def test_runner_releases_stage_locks_when_a_run_fails(tmp_path, monkeypatch):
    from nado.pipeline.run import Runner
    cache = StageCache(tmp_path / "cache")

    def failing(self):
        self.cache.lookup("collect-nra", {"x": 1})   # a stage starts, then the run fails
        raise RuntimeError("rig on fire")

    monkeypatch.setattr(Runner, "_run", failing)
    runner = Runner.__new__(Runner)
    runner.cache = cache
    with pytest.raises(RuntimeError, match="rig on fire"):
        runner.run()
    assert cache._held == {}
    got: list[bool] = []

    def other() -> None:
        c = StageCache(tmp_path / "cache")
        got.append(c.lookup("collect-nra", {"x": 1})[1])
        c.release_all()

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert got == [False]                          # not blocked; the unfinished stage is redone


def test_stage_keys_refuse_objects_that_are_not_plain_data(tmp_path):
    """An object's str() (e.g. '<Foo object at 0x...>') must never become part of a cache key."""
    from nado.pipeline.cache import stage_key

    class Foo:
        pass
    assert stage_key("s", {"a": {1, 3, 2}, "p": tmp_path}) == stage_key("s", {"a": [1, 2, 3], "p": str(tmp_path)})
    with pytest.raises(TypeError, match="Foo"):
        stage_key("s", {"x": Foo()})
    with pytest.raises(TypeError, match="Foo"):
        StageCache(tmp_path).lookup("s", {"x": Foo()})


def test_a_conditions_key_does_not_depend_on_the_other_conditions(tmp_path):
    """A scenario can run condition by condition on one cache (two visibilities side by side, then
    the full scenario assembles its report from the cached stages): a condition's task key is the
    same whether the scenario lists it alone or beside others, and differs between conditions."""
    from pathlib import Path

    from nado.pipeline.run import task_digest
    from nado.pipeline.scenario import dump_toml, load_scenario, read_toml
    from nado.pipeline.sweep import apply_overrides
    from nado.tasks.adapt import build_conditions

    quickstart = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
    keys = {}
    for vis in ([25, 20], [20]):
        path = tmp_path / f"vis{len(vis)}.toml"
        path.write_text(dump_toml(apply_overrides(read_toml(quickstart), {"task.visibility": vis})))
        keys[len(vis)] = {c.name: task_digest(c) for c in build_conditions(load_scenario(path))}
    assert keys[1]["vis20"] == keys[2]["vis20"]
    assert keys[2]["vis20"] != keys[2]["vis25"]


def test_a_reused_stage_still_reports_what_it_cost(tmp_path):
    """DONE records a stage's compute seconds (clock injected: lookup at 100 s, finish at 112.5 s);
    a later run that reuses the folder reads them back, and the report lists them. Folders written
    before this was recorded (DONE = {}) show as unknown, not as 0."""
    import json

    from nado.pipeline.report import _stage_seconds

    clock = iter([100.0, 112.5, 200.0])
    first = StageCache(tmp_path, clock=lambda: next(clock))
    d, done = first.lookup("train-sde", {"seed": 0})
    assert not done
    first.finish(d)
    assert json.loads((d / "DONE").read_text())["seconds"] == 12.5
    old, _ = first.lookup("collect-nra", {"seed": 0})
    (old / "DONE").write_text("{}")                      # as an older nado left it
    first.release_all()

    second = StageCache(tmp_path)
    for stage in ("train-sde", "collect-nra"):
        assert second.lookup(stage, {"seed": 0})[1]
    assert second.seconds == {d.name: 12.5, old.name: None}
    lines = _stage_seconds({"hits": second.hits, "misses": [], "seconds": second.seconds})
    assert f"| {d.name} | 12.5 | reused |" in lines and f"| {old.name} | - | reused |" in lines
    assert "1 of 2 recorded, 12 s in all" in lines[1]
