"""One variant loop: ``nado run`` and ``nado train`` + ``nado transfer`` give the same numbers for the
same scenario and seed (same twins from the stage cache, same training seed, same measuring seeds)."""
import json

import pytest

from nado.cli import main
from test_network_cli import STATION  # the same leaky station

pytestmark = pytest.mark.e2e


SCENARIO = """
[run]
name = "agree"
seed = 3
out = "{out}"
cache = "{cache}"
[station]
path = "station.toml"
bind = "inproc"
[rigs]
nra = "nra"
[collect]
sequences = 48
length = 10
repeats = [6, 4]
resets = 12
batch = 24
[twins]
n_delay = 2
n_aux = 2
width = 8
depth = 1
[twins.ode]
epochs = 2
batch = 64
[twins.sde]
warm_iters = 2
gan_iters = 2
eval_every = 2
[task]
kind = "digits"
visibility = [25]
maskings = 2
n_train = 60
n_test = 30
[network]
layers = ["nra", "nra"]
nodes = [4, 3]
[train]
epochs = 1
batch_size = 30
[variants]
list = ["sde", "ode", "rc", "rc1", "mlp", "leaky"]
"""


def test_transfer_command_and_run_report_identical_numbers(tmp_path):
    (tmp_path / "station.toml").write_text(STATION)
    scen = tmp_path / "scen.toml"
    scen.write_text(SCENARIO.format(out=tmp_path / "runs", cache=tmp_path / "cache"))
    assert main(["run", str(scen), "--no-progress"]) == 0
    run = json.loads((tmp_path / "runs" / "agree" / "results.json").read_text())["conditions"]["vis25"]["networks"]
    common = [str(scen), "--out", str(tmp_path / "cli"), "--no-progress"]
    assert main(["train", *common]) == 0 and main(["transfer", *common]) == 0
    cli = json.loads((tmp_path / "cli" / "transfer.json").read_text())["vis25"]
    trained = json.loads((tmp_path / "cli" / "train.json").read_text())["vis25"]
    assert set(cli) == set(run) == {"sde", "ode", "rc", "rc1", "mlp", "leaky"}
    for v in cli:
        assert cli[v]["sim"] == run[v]["sim"], v
        assert cli[v]["transfer"] == run[v]["transfer"], v
    for v in trained:
        assert trained[v]["sim"] == run[v]["sim"], v
    assert len(run["sde"]["sim"]["accuracy_by_masking"]) == 2       # both maskings measured, averaged
    assert run["sde"]["drives"] == cli["sde"]["drives"] == [2, 2]   # one drive per layer and masking


REGRESSION = SCENARIO.split("[task]")[0] + """
[task]
kind = "mackey_glass"
horizons = [1, 2, 3]
input_window = 40
[network]
layers = ["nra", "nra", "nra"]
nodes = [4, 4, 4]
[train]
epochs = 1
batch_size = 32
tbptt = 10
burn_in = 5
washout = 5
[variants]
list = ["direct", "cascade"]
depths = [2, 3]
"""


def test_cascade_command_and_run_report_identical_numbers(tmp_path):
    (tmp_path / "station.toml").write_text(STATION)
    scen = tmp_path / "scen.toml"
    scen.write_text(REGRESSION.format(out=tmp_path / "runs", cache=tmp_path / "cache"))
    assert main(["run", str(scen), "--no-progress"]) == 0
    (name, cond), = json.loads((tmp_path / "runs" / "agree" / "results.json").read_text())["conditions"].items()
    assert main(["cascade", str(scen), "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    cli = json.loads((tmp_path / "cli" / "cascade.json").read_text())[name]
    for depth in ("L2", "L3"):
        for v in ("direct", "cascade"):
            run, cmd = cond["by_depth"][depth][v], cli[depth][v]
            assert cmd["sim"] == run["sim"] and cmd["transfer"] == run["transfer"], (depth, v)
            assert len(cmd["transfer"]["mse_by_horizon_sections"]) == 10 and cmd["transfer"]["units"] == "series"


@pytest.mark.timeout(900)
def test_nado_run_trains_rig_in_the_loop_variants_after_what_they_start_from(tmp_path):
    """``pat_finetune`` and ``refine`` run inside the one variant loop after ``sde``; each books its
    instrument time by stage, and the run's report draws accuracy against instrument time."""
    (tmp_path / "station.toml").write_text(STATION)
    body = SCENARIO.format(out=tmp_path / "runs", cache=tmp_path / "cache").replace(
        'list = ["sde", "ode", "rc", "rc1", "mlp", "leaky"]',
        'list = ["pat_finetune", "refine"]\n[variants.pat]\nepochs = 1\n[variants.refine]\nrounds = 1\n'
        'sequences = 8\nretrain_epochs = 1')
    scen = tmp_path / "rig.toml"
    scen.write_text(body)
    assert main(["run", str(scen), "--no-progress"]) == 0
    res = json.loads((tmp_path / "runs" / "agree" / "results.json").read_text())
    nets = res["networks"]
    assert set(nets) == {"pat_finetune", "refine"}          # sde trained for them, not reported
    for v, r in nets.items():
        stages = r["instrument_by_stage"]
        assert stages["collect"] > 0 and r["transfer"]["accuracy"] is not None
        assert r["instrument_total_s"] == pytest.approx(sum(stages.values()))
    assert nets["pat_finetune"]["instrument_by_stage"]["pat"] > 0
    dg = nets["pat_finetune"]["diagnostics"]                 # the measurements behind its result
    assert len(dg["forward_nrmse"]) == len(dg["rig_repeat_nrmse"]) == 2 and dg["instrument_s"] > 0
    assert -1 <= dg["cos_pat_twin"] <= 1 and res["instrument_s"]["patdiag.vis25"] == dg["instrument_s"]
    assert "what its gradient sees" in (tmp_path / "runs" / "agree" / "report.md").read_text()
    assert nets["refine"]["instrument_by_stage"]["refine"] > 0
    assert (tmp_path / "runs" / "agree" / "fig_instrument_time.png").is_file()


def test_a_variant_table_of_train_changes_that_variant_alone(tmp_path):
    """``[train.leaky]`` trains the leaky reference with its own keys, in ``nado run`` and in
    ``nado train`` alike, and leaves every other variant's stage (and so its cache key) as it was."""
    (tmp_path / "station.toml").write_text(STATION)
    body = SCENARIO.format(out=tmp_path / "runs", cache=tmp_path / "cache").replace(
        'list = ["sde", "ode", "rc", "rc1", "mlp", "leaky"]', 'list = ["mlp", "leaky"]')
    results = tmp_path / "runs" / "agree" / "results.json"
    plain, table = tmp_path / "plain.toml", tmp_path / "table.toml"
    plain.write_text(body)
    table.write_text(body + "[train.leaky]\nepochs = 3\nlr = 0.05\n")
    assert main(["run", str(plain), "--no-progress"]) == 0
    before = json.loads(results.read_text())["networks"]
    assert main(["run", str(table), "--no-progress"]) == 0
    after = json.loads(results.read_text())["networks"]
    assert after["mlp"]["cached"] and after["mlp"]["sim"] == before["mlp"]["sim"]
    assert not after["leaky"]["cached"]
    epochs = {k: len(r["history"]["loss"]) for k, r in (("before", before["leaky"]), ("after", after["leaky"]))}
    assert epochs == {"before": 1, "after": 3} and len(after["mlp"]["history"]["loss"]) == 1
    assert main(["train", str(table), "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    trained = json.loads((tmp_path / "cli" / "train.json").read_text())["vis25"]
    assert trained["leaky"]["sim"] == after["leaky"]["sim"] and len(trained["leaky"]["history"]["loss"]) == 3
    assert trained["mlp"]["sim"] == after["mlp"]["sim"]
