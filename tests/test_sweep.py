"""nado sweep, fast parts: grid and override parsing, trial expansion, validation before work,
the lock-safe stage cache (nado.pipeline.cache), and resume / failure bookkeeping (with a stand-in trial function)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from nado.errors import ConfigError
from nado.pipeline.cache import StageCache
from nado.pipeline.sweep.grid import (Sweep, SweepSpec, apply_overrides, expand, parse_grid, parse_value,
                        run_sweep, split_values, trial_name)

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"


def test_split_values_respects_brackets_and_quotes():
    assert split_values("1,2, 3") == ["1", "2", "3"]
    assert split_values("[16,16],[32,32]") == ["[16,16]", "[32,32]"]
    assert split_values('"a,b",c') == ['"a,b"', "c"]
    assert split_values("{x = 1, y = 2},{x = 3}") == ["{x = 1, y = 2}", "{x = 3}"]
    for bad in ("[1,2", "1]", '"open'):
        with pytest.raises(ConfigError):
            split_values(bad)


def test_parse_value_reads_toml_and_bare_words():
    assert parse_value("4") == 4 and isinstance(parse_value("4"), int)
    assert parse_value("0.5") == 0.5
    assert parse_value("[25, 20]") == [25, 20]
    assert parse_value("true") is True
    assert parse_value('"sde"') == "sde" and parse_value("sde") == "sde"
    with pytest.raises(ConfigError, match="empty value"):
        parse_value("")
    with pytest.raises(ConfigError, match="cannot read value"):
        parse_value("1 2 3")


def test_parse_grid_orders_keys_and_names_problems():
    grid = parse_grid(["train.lr=0.01,0.02", "network.nodes=[16],[32]", "twins.sde.gan_iters=50"])
    assert list(grid) == ["train.lr", "network.nodes", "twins.sde.gan_iters"]
    assert grid["network.nodes"] == [[16], [32]] and grid["twins.sde.gan_iters"] == [50]
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid(["train.lr"])
    with pytest.raises(ConfigError, match="dotted"):
        parse_grid(["lr=0.1,0.2"])
    with pytest.raises(ConfigError, match="twice"):
        parse_grid(["train.lr=1", "train.lr=2"])
    with pytest.raises(ConfigError, match="repeats"):
        parse_grid(["train.lr=1,1"])
    with pytest.raises(ConfigError, match="train.lr.*empty"):
        parse_grid(["train.lr=1,,2"])


def test_overrides_set_dotted_keys_and_win_over_the_budget():
    raw = {"train": {"epochs": 30}, "budget": {"train": {"epochs": 4}}, "twins": {"width": 8}}
    out = apply_overrides(raw, {"train.epochs": 7, "twins.sde.gan_iters": 50, "train.lr": 0.1})
    assert out["train"] == {"epochs": 7, "lr": 0.1}
    assert out["budget"]["train"] == {"epochs": 7}            # mirrored: the key was in the budget
    assert out["twins"] == {"width": 8, "sde": {"gan_iters": 50}}
    assert raw["train"]["epochs"] == 30                          # the input is not modified
    with pytest.raises(ConfigError, match="twins.width is a value"):
        apply_overrides(raw, {"twins.width.x": 1})


def test_expand_is_the_product_times_seeds_with_unique_names():
    grid = {"train.lr": [0.01, 0.02], "network.nodes": [[16], [32]], "twins.sde.gan_iters": [50]}
    trials = expand(grid, [0, 1])
    assert len(trials) == 8 and len({t.name for t in trials}) == 8
    assert [t.seed for t in trials[:2]] == [0, 1]                # seeds innermost
    assert trials[0].keys == {"train.lr": 0.01, "network.nodes": [16]}   # fixed keys not swept
    assert trials[0].overrides == {"twins.sde.gan_iters": 50, "train.lr": 0.01,
                                   "network.nodes": [16], "run.seed": 0}
    assert trial_name({"train.lr": 0.01}, 3) == "train.lr=0.01__seed=3"
    odd = trial_name({"task.data_dir": "/x y/z"}, 0)
    assert "/" not in odd and " " not in odd


def test_every_trial_is_validated_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"trial train.lrr=.*train.*lrr"):
        run_sweep(QUICKSTART, ["train.lrr=0.1,0.2"], out=tmp_path / "s", engine="serial")
    with pytest.raises(ConfigError, match="network.nodes"):
        run_sweep(QUICKSTART, ["network.nodes=[8],[8,8]"], out=tmp_path / "s", engine="serial")
    with pytest.raises(ConfigError, match="--seeds N"):
        run_sweep(QUICKSTART, ["run.seed=1,2"], out=tmp_path / "s", engine="serial")
    with pytest.raises(ConfigError, match="--seeds must be"):
        run_sweep(QUICKSTART, [], seeds=0, out=tmp_path / "s", engine="serial")
    assert not (tmp_path / "s" / "trials").exists()


def test_trial_scenarios_are_written_resolved(tmp_path):
    import tomllib
    sw = Sweep(SweepSpec(QUICKSTART, parse_grid(["train.epochs=2,3"]), seeds=2, out=tmp_path / "s",
                         quick=True))
    assert len(sw.trials) == 4
    t = sw.trials[3]
    spec, = sw.specs([t])
    tables = tomllib.loads(Path(spec["toml"]).read_text())
    assert tables["train"]["epochs"] == 3 == tables["budget"]["train"]["epochs"]
    assert tables["run"]["seed"] == 1 and tables["run"]["cache"] == str(tmp_path / "s" / "cache")
    assert json.loads((Path(spec["run_dir"]) / "trial.json").read_text())["keys"] == {"train.epochs": 3}


# ---------------------------------------------------------------- the stage cache under concurrency
def test_stage_cache_lets_one_trial_compute_a_stage_and_the_other_reuse_it(tmp_path):
    """Ordered by events, not sleeps: a holds the stage; b starts only then and cannot get past
    lookup while a holds it (b is still blocked after a bounded wait); b then reuses a's result."""
    events = []
    a_holds, b_starts = threading.Event(), threading.Event()
    blocked: list[bool] = []

    def trial(tag: str) -> None:
        cache = StageCache(tmp_path)
        if tag == "b":
            b_starts.set()
        d, done = cache.lookup("fit", {"x": 1})
        events.append((tag, "hit" if done else "miss"))
        if not done:
            (d / "part").write_text(tag)
            a_holds.set()
            assert b_starts.wait(10)
            b.join(0.3)                        # b must not get through while a holds the stage
            blocked.append(b.is_alive())
            (d / "model").write_text(tag)
            events.append((tag, "finish"))
            cache.finish(d)
        cache.release_all()

    a = threading.Thread(target=trial, args=("a",))
    b = threading.Thread(target=trial, args=("b",))
    a.start()
    assert a_holds.wait(10)
    b.start()
    a.join(10)
    b.join(10)
    assert events == [("a", "miss"), ("a", "finish"), ("b", "hit")]
    assert blocked == [True]                               # b waited for a's stage
    d = next(tmp_path.glob("fit-*"))
    assert (d / "model").read_text() == "a" and (d / "DONE").is_file()


def test_stage_cache_redoes_a_stage_left_unfinished(tmp_path):
    c1 = StageCache(tmp_path)
    d, done = c1.lookup("fit", {"x": 2})
    (d / "junk").write_text("half")
    c1.release_all()                                         # the trial failed mid-stage
    c2 = StageCache(tmp_path)
    d2, done2 = c2.lookup("fit", {"x": 2})
    assert d2 == d and not done and not done2 and not (d / "junk").exists()
    c2.finish(d2)


# ---------------------------------------------------------------- resume and failures
def _fake_trial(fail: set[str], calls: list[str]):
    def run_trial(spec):
        calls.append(spec["name"])
        seed = json.loads((Path(spec["run_dir"]) / "trial.json").read_text())["seed"]
        if any(f in spec["name"] for f in fail):
            return {"name": spec["name"], "status": "failed", "seconds": 0.1,
                    "error": "RuntimeError: rig on fire", "traceback": "..."}
        results = {"networks": {"sde": {"sim": {"accuracy": 0.5 + seed / 10}, "transfer": {"accuracy": 0.4},
                                        "history": {"loss": [1.0]}}},
                   "twins": {"sde": {"w1": 0.2, "kind": "nra"}, "by_kind": {"nra": {"sde": {"w1": 0.2}}}},
                   "rigs": {"nra": {"snr": 2.0}}, "timing": {"total": 1.5}}
        (Path(spec["run_dir"]) / "results.json").write_text(json.dumps(results))
        return {"name": spec["name"], "status": "done", "seconds": 1.5, "hits": [], "misses": []}
    return run_trial


@pytest.mark.e2e
def test_resume_skips_done_records_failures_and_retries_only_them(tmp_path, monkeypatch):
    import nado.pipeline.sweep.trial as st
    calls: list[str] = []
    monkeypatch.setattr(st, "run_trial", _fake_trial({"lr=0.02"}, calls))
    kw = dict(seeds=2, out=tmp_path / "s", engine="serial", log=lambda m: None)
    s1 = run_sweep(QUICKSTART, ["train.lr=0.01,0.02"], **kw)
    assert len(calls) == 4 and len(s1["ran"]) == 4 and s1["engine"] == "serial"
    assert sorted(s1["failed"]) == ["train.lr=0.02__seed=0", "train.lr=0.02__seed=1"]
    failures = json.loads((tmp_path / "s" / "failures.json").read_text())
    assert failures["train.lr=0.02__seed=0"]["error"] == "RuntimeError: rig on fire"
    csv = (tmp_path / "s" / "table.csv").read_text().splitlines()
    header = csv[0].split(",")
    assert len(csv) == 5 and header[:6] == ["trial", "train.lr", "seed", "status", "error", "seconds"]
    assert "networks.sde.sim.accuracy" in header and "twins.sde.w1" in header and "rigs.nra.snr" in header
    assert not any(h.startswith("twins.by_kind") for h in header)      # the primary kind: no duplicate
    rows = [dict(zip(header, line.split(","))) for line in csv[1:]]
    assert [r["status"] for r in rows] == ["done", "done", "failed", "failed"]
    assert rows[2]["error"] == "RuntimeError: rig on fire" and rows[1]["networks.sde.sim.accuracy"] == "0.6"
    assert (tmp_path / "s" / "fig_train_lr.png").stat().st_size > 1000

    calls.clear()
    s2 = run_sweep(QUICKSTART, ["train.lr=0.01,0.02"], **kw)      # nothing to do: failed ones wait
    assert calls == [] and s2["ran"] == [] and len(s2["skipped"]) == 2 and len(s2["failed"]) == 2

    monkeypatch.setattr(st, "run_trial", _fake_trial(set(), calls))
    s3 = run_sweep(QUICKSTART, ["train.lr=0.01,0.02"], retry_failed=True, **kw)
    assert sorted(calls) == ["train.lr=0.02__seed=0", "train.lr=0.02__seed=1"]
    assert s3["failed"] == [] and json.loads((tmp_path / "s" / "failures.json").read_text()) == {}

    calls.clear()                    # a changed scenario (another fixed override) reruns every trial
    s4 = run_sweep(QUICKSTART, ["train.lr=0.01,0.02", "train.epochs=3"], **kw)
    assert len(calls) == 4 and len(s4["ran"]) == 4


def test_a_real_failing_trial_is_recorded_with_its_error(tmp_path):
    """The real runner, failing fast at the task stage (no MNIST files): error.json and failures.json."""
    import tomllib
    raw = tomllib.loads(QUICKSTART.read_text())
    missing = tmp_path / "no-mnist-here"
    text = QUICKSTART.read_text().replace('kind = "digits"', f'kind = "mnist"\ndata_dir = "{missing}"')
    (tmp_path / "sc.toml").write_text(text)
    assert raw["task"]["kind"] == "digits"
    s = run_sweep(tmp_path / "sc.toml", [], out=tmp_path / "s", engine="serial", log=lambda m: None)
    assert len(s["failed"]) == 1
    err = json.loads((tmp_path / "s" / "failures.json").read_text())[s["failed"][0]]["error"]
    assert "no-mnist-here" in err or "mnist" in err.lower()
    assert (tmp_path / "s" / "trials" / s["failed"][0] / "error.json").is_file()


def test_cli_sweep_reports_and_exits_nonzero_on_failures(tmp_path, monkeypatch, capsys):
    import nado.pipeline.sweep.trial as st
    from nado.cli import main
    monkeypatch.setattr(st, "run_trial", _fake_trial({"seed=1"}, []))
    rc = main(["sweep", str(QUICKSTART), "--grid", "train.lr=0.01", "--seeds", "2", "--serial",
               "--out", str(tmp_path / "s")])
    out = capsys.readouterr()
    assert rc == 1 and "2 trials: 2 run now, 0 already done, 1 failed" in out.out
    assert "--retry-failed" in out.err and "one after another" in out.err


def test_without_ray_trials_run_serially_and_the_command_says_so(monkeypatch):
    import nado.pipeline.sweep.engines as se
    monkeypatch.setattr(se, "_have_ray", lambda: False)
    logs: list[str] = []
    name, submit = se.pick_engine("auto", log=logs.append)
    assert name == "serial" and "Ray is not installed" in logs[0] and "nado[ray]" in logs[0]
    with pytest.raises(ConfigError, match="Ray is not installed"):
        se.pick_engine("ray", log=logs.append)
    with pytest.raises(ConfigError, match="Ray is not installed"):
        se.pick_engine("auto", address="ray://head:10001", log=logs.append)
    with pytest.raises(ConfigError, match="engine must be"):
        se.pick_engine("dask", log=logs.append)
