"""The quickstart scenario end to end, with its reduced budget (--quick): the same code path as
`nado run scenarios/quickstart.toml`, on the built-in emulated NRA served over ipc://.

The reduced budget is sized to show the paper's effect, not only to exercise the path
(docs/classification.md): with seed 0 the ODE twin's network loses more on transfer than the SDE
twin's, and the SDE twin's weights transfer as well, within the sampling error of its 300 test
images."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


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


def test_the_effect_on_a_ci_sized_run(first_run):
    """Fixed seeds, so the numbers are fixed; the margins say how far they are from the limits."""
    _, res = first_run
    nets = res["networks"]
    acc = {v: {c: nets[v][c]["accuracy"] for c in ("sim", "transfer")} for v in ("sde", "ode")}
    over = {v: acc[v]["sim"] - acc[v]["transfer"] for v in acc}
    # the networks learned the task (chance is 10 %), so the comparison means something
    assert acc["sde"]["transfer"] > 0.6 and acc["ode"]["sim"] > 0.6, acc
    # the paper's effect: the noise-free twin over-promises more than the noise-aware one ...
    assert over["ode"] > over["sde"], (over, acc)
    # ... and the noise-aware twin's weights do as well on the rig, within one standard error of
    # the difference of two accuracies near 0.85 on 300 test images (sqrt(2 x 0.85 x 0.15 / 300)
    # = 0.029). At this size the two transfers differ by a few images and float rounding moves
    # them: at eb651d5 85.0 and 85.0 %, with the fused CPU kernels of nado.twin._fast (gradients
    # equal to 7e-7) SDE 84.3 and ODE 85.7 %, and with 3 maskings 82.9 / 83.4 % at eb651d5; the
    # ordering needs the paper's scale (results/mnist_nra-seeds: SDE +0.5 points, 3 seeds of 3).
    assert acc["sde"]["transfer"] >= acc["ode"]["transfer"] - 0.029, acc
    # the SDE twin reproduces the rig's repeat-to-repeat spread (DESIGN.md's band)
    assert 0.8 <= res["twins"]["sde"]["std_ratio"] <= 1.25, res["twins"]["sde"]


def test_run_folder_holds_scenario_report_and_figures(first_run):
    import tomllib
    base, res = first_run
    run = base / "run"
    resolved = tomllib.loads((run / "scenario.toml").read_text())
    assert resolved["task"]["kind"] == "digits" and resolved["train"]["epochs"] == 12  # the budget's
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
