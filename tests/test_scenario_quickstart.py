"""The quickstart scenario end to end, with its reduced budget (--quick): the same code path as
`nado run scenarios/quickstart.toml`, on the built-in emulated NRA served over ipc://."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from nado.pipeline.run import run_scenario
    base = tmp_path_factory.mktemp("quickstart")
    res = run_scenario(QUICKSTART, out=base / "run", quick=True, cache_dir=base / "cache",
                       progress=False)
    return base, res


def test_results_layout(first_run):
    base, res = first_run
    on_disk = json.loads((base / "run" / "results.json").read_text())
    assert on_disk["networks"].keys() == res["networks"].keys() == {"sde", "ode", "rc", "leaky"}
    for v in ("sde", "ode", "rc"):
        for col in ("sim", "transfer"):
            acc = on_disk["networks"][v][col]["accuracy"]
            assert 0.0 <= acc <= 1.0
    assert on_disk["networks"]["leaky"]["transfer"] is None  # software: nothing to transfer
    for kind in ("ode", "sde"):
        assert {"mean_error", "std_ratio", "autocov_error", "w1", "nrmse_by_horizon"} <= \
            set(on_disk["twins"][kind])
    snr = on_disk["rigs"]["nra"]["snr"]
    assert math.isfinite(snr) and snr > 0
    assert on_disk["twins"]["ode"]["std_ratio"] == 0.0 < on_disk["twins"]["sde"]["std_ratio"]
    assert on_disk["instrument_s"]["total"] > 0 and on_disk["timing"]["total"] > 0
    assert on_disk["quick"] is True and on_disk["seeds"]["run"] == 0
    assert {"nado", "torch", "numpy", "python"} <= set(on_disk["versions"])


def test_run_folder_holds_scenario_report_and_figures(first_run):
    import tomllib
    base, res = first_run
    run = base / "run"
    resolved = tomllib.loads((run / "scenario.toml").read_text())
    assert resolved["task"]["kind"] == "digits" and resolved["train"]["epochs"] == 4  # the budget's
    report = (run / "report.md").read_text()
    assert "| sde |" in report and "96.8" in report  # ours beside the paper's
    for fig in ("fig_accuracy.png", "fig_training.png", "fig_twin_repeats_nra.png"):
        assert (run / fig).stat().st_size > 1000, fig


def test_rerun_reuses_every_stage(first_run):
    from nado.pipeline.run import run_scenario
    base, res = first_run
    again = run_scenario(QUICKSTART, out=base / "run2", quick=True, cache_dir=base / "cache",
                         progress=False)
    assert again["cache"]["misses"] == []
    assert len(again["cache"]["hits"]) == len(res["cache"]["misses"])
    assert again["networks"]["sde"]["transfer"] == res["networks"]["sde"]["transfer"]
    assert again["rigs"]["nra"]["snr"] == res["rigs"]["nra"]["snr"]
