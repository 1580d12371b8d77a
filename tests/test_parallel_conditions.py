"""``[run] jobs`` / ``nado run --jobs``: task conditions in worker processes give exactly the
numbers of a sequential run with the workers' thread count, and --fresh computes each stage once."""
import json
import shutil

import pytest
import torch

from nado.errors import ConfigError
from nado.pipeline.parallel import ConditionError, compute_conditions
from nado.pipeline.run import Runner, run_scenario, with_jobs
from nado.pipeline.scenario import load_scenario
from test_network_cli import STATION  # the leaky station
from test_variants_agree import SCENARIO as ONE_CONDITION

pytestmark = pytest.mark.e2e

TWO_CONDITIONS = (ONE_CONDITION.replace("visibility = [25]", "visibility = [25, 20]")
                  .replace('list = ["sde", "ode", "rc", "rc1", "mlp", "leaky"]',
                           'list = ["sde", "ode", "rc", "leaky"]'))
DEVICE_STAGES = ("collect-", "ode-", "sde-", "twinreport-")


def _scenario(tmp_path):
    (tmp_path / "station.toml").write_text(STATION)
    scen = tmp_path / "scen.toml"
    scen.write_text(TWO_CONDITIONS.format(out=tmp_path / "runs", cache=tmp_path / "unused"))
    return scen


def _networks(res):
    return {c: {v: (r["sim"], r["transfer"]) for v, r in entry["networks"].items()}
            for c, entry in res["conditions"].items()}


def test_conditions_in_workers_equal_a_sequential_run(tmp_path):
    scen = _scenario(tmp_path)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)                     # two workers: one thread each
        par = run_scenario(scen, out=tmp_path / "par", cache_dir=tmp_path / "c1", progress=False,
                           jobs=2)
        # the sequential run computes every network stage itself, from the same device stages
        (tmp_path / "c2").mkdir()
        for d in (tmp_path / "c1").iterdir():
            if d.name.startswith(DEVICE_STAGES):
                shutil.copytree(d, tmp_path / "c2" / d.name)
        torch.set_num_threads(1)
        seq = run_scenario(scen, out=tmp_path / "seq", cache_dir=tmp_path / "c2", progress=False,
                           jobs=1)
        # --fresh with workers: the run redoes the device stages, the workers the networks,
        # and the run reuses the workers' stages instead of computing them a second time
        torch.set_num_threads(2)
        fresh = run_scenario(scen, out=tmp_path / "fresh", cache_dir=tmp_path / "c1",
                             progress=False, jobs=2, fresh=True)
    finally:
        torch.set_num_threads(threads)
    assert (par["jobs"], seq["jobs"]) == (2, 1)
    assert set(par["conditions"]) == {"vis25", "vis20"}
    assert _networks(par) == _networks(seq) == _networks(fresh)
    assert _networks(par)["vis25"] != _networks(par)["vis20"]     # each condition its own work
    network_stages = [n for n in seq["cache"]["misses"] if not n.startswith(DEVICE_STAGES)]
    assert len(network_stages) >= 6 and not seq["cache"]["computed_in_workers"]
    for res in (par, fresh):     # the parallel runs: every network stage computed once, by a worker
        assert sorted(res["cache"]["computed_in_workers"]) == sorted(network_stages)
        assert sorted(res["cache"]["misses"]) == sorted(set(res["cache"]["misses"]))
        assert not set(network_stages) & set(res["cache"]["hits"])     # reported as computed
    assert {n.split("-")[0] for n in fresh["cache"]["misses"]} == {
        "collect", "ode", "sde", "twinreport", "train", "transfer", "baseline", "software"}
    rows = [line for line in (tmp_path / "fresh" / "report.md").read_text().splitlines()
            if line.startswith("| train-")]
    assert len(rows) == 4 and all(r.endswith("| computed |") for r in rows), rows
    saved = json.loads((tmp_path / "par" / "results.json").read_text())
    assert saved["jobs"] == 2 and _networks(saved) == _networks(par)


def test_a_failing_worker_is_reported_with_its_conditions(tmp_path):
    with pytest.raises(ConditionError) as err:
        compute_conditions(Runner, None, ["vis25", "vis20"], tmp_path, 2, fresh=False, adopt=[],
                           threads=2, log=lambda msg: None)
    assert "vis25" in str(err.value) and "vis20" in str(err.value)
    assert "run again to resume" in str(err.value)


def test_jobs_must_be_a_positive_whole_number(tmp_path):
    scen = _scenario(tmp_path)
    sc = load_scenario(scen)
    assert sc.run.jobs == 1 and with_jobs(sc, None) is sc and with_jobs(sc, 3).run.jobs == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="--jobs"):
            with_jobs(sc, bad)
    scen.write_text(scen.read_text().replace('name = "agree"', 'name = "agree"\njobs = 0'))
    with pytest.raises(ConfigError, match="run.jobs"):
        load_scenario(scen)
