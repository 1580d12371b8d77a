"""TensorBoard event files: the writer's tags and values, and ``nado run`` writing them (or not)."""
from __future__ import annotations

import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from nado.tensorboard import EVENT_GLOB, write_run_events  # noqa: E402


def load(run_dir):
    files = sorted(run_dir.glob(EVENT_GLOB))
    assert len(files) == 1, files
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def values(ea, tag):
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_write_run_events_tags_and_values(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    png = tmp_path / "fig_accuracy.png"
    fig.savefig(png)
    plt.close(fig)
    (tmp_path / "report.md").write_text("# nado run\n\nSDE 93.2 %\n")
    results = {
        "conditions": {"v25": {
            "networks": {"sde": {"history": {"epoch": [0, 1, 2], "loss": [2.0, 1.0, 0.5],
                                             "val": [0.5, 0.7, 0.8], "lr": [0.01] * 3, "val_metric": "accuracy"},
                                 "sim": {"accuracy": 0.94, "note": "x"}, "transfer": {"accuracy": 0.93}}},
            "by_depth": {"L2": {"cascade": {"histories": [{"loss": [1.0, 0.4]}, {"loss": [0.9, 0.3]}],
                                            "sim": {"mse": 2e-3}, "transfer": {"mse": 3e-3}}}}}},
        "twins": {"by_kind": {"nra": {"ode": {"mean_error": 0.1}, "sde": {"w1": 0.05, "std_ratio": 1.1}}}},
        "rigs": {"nra": {"snr": 2.1}}, "instrument_s": {"total": 12.5}, "timing": {"total": 30.0},
        "files": {"fig_accuracy": str(png), "report": str(tmp_path / "report.md")}}
    hists = {"nra": {"ode": {"train_loss": [0.5, 0.25], "val_loss": [0.6, 0.3], "window": 20},
                     "sde": {"warm_loss": [1.0, 0.8, 0.7], "critic_loss": [0.1], "gen_loss": [0.2],
                             "val": [{"iter": 0, "phase": "warm", "w1": 0.3, "std_ratio": 0.5},
                                     {"iter": 50, "phase": "gan", "w1": 0.1, "std_ratio": 0.9}]}}}
    write_run_events(tmp_path, results, hists)
    ea = load(tmp_path)
    assert values(ea, "train/v25/sde/loss") == [(0, 2.0), (1, 1.0), (2, 0.5)]
    assert [v for _, v in values(ea, "train/v25/sde/val")] == pytest.approx([0.5, 0.7, 0.8])
    assert values(ea, "train/v25/cascade-L2/layer1/loss") == [(0, pytest.approx(0.9)), (1, pytest.approx(0.3))]
    assert values(ea, "twin/nra/ode/val_loss") == [(0, pytest.approx(0.6)), (1, pytest.approx(0.3))]
    assert [s for s, _ in values(ea, "twin/nra/sde/val/w1")] == [0, 50]
    assert values(ea, "metrics/v25/sde/transfer/accuracy") == [(0, pytest.approx(0.93))]
    assert values(ea, "metrics/v25/cascade-L2/sim/mse") == [(0, pytest.approx(2e-3))]
    assert values(ea, "metrics/twin/nra/sde/std_ratio") == [(0, pytest.approx(1.1))]
    assert values(ea, "metrics/rig/nra/snr") == [(0, pytest.approx(2.1))]
    assert values(ea, "metrics/instrument_s") == [(0, 12.5)]
    tags = ea.Tags()
    assert "metrics/v25/sde/sim/note" not in tags["scalars"]   # text is no scalar
    assert "twin/nra/ode/window" not in tags["scalars"]        # settings are no curve
    assert tags["images"] == ["figures/fig_accuracy"]
    assert "report/text_summary" in tags["tensors"]
    # writing again replaces the file: one event file, the same curves once
    write_run_events(tmp_path, results, hists)
    assert values(load(tmp_path), "train/v25/sde/loss") == [(0, 2.0), (1, 1.0), (2, 0.5)]


TINY = """
[run]
seed = 0
{extra}
[station]
path = "builtin"
bind = "inproc"
[rigs]
nra = "nra"
[collect]
sequences = 120
length = 10
repeats = [10, 5]
resets = 20
[twins]
n_delay = 2
n_aux = 2
width = 8
depth = 1
[twins.ode]
epochs = 2
[twins.sde]
warm_iters = 4
gan_iters = 4
[task]
kind = "digits"
visibility = [25]
maskings = 1
n_train = 120
n_test = 60
[network]
layers = ["nra"]
nodes = [6]
[train]
epochs = 2
batch_size = 32
[variants]
list = ["sde", "ode"]
"""


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_nado_run_writes_events_unless_turned_off(tmp_path):
    from nado.pipeline.run import run_scenario
    on, off = tmp_path / "on.toml", tmp_path / "off.toml"
    on.write_text(TINY.format(extra=""))
    off.write_text(TINY.format(extra="tensorboard = false"))
    cache = tmp_path / "cache"
    res = run_scenario(on, out=tmp_path / "runs" / "on", cache_dir=cache, progress=False)
    ea = load(tmp_path / "runs" / "on")
    tags = ea.Tags()
    for tag in ("twin/nra/ode/train_loss", "twin/nra/sde/warm_loss", "train/vis25/sde/loss",
                "train/vis25/ode/val", "metrics/vis25/sde/transfer/accuracy",
                "metrics/vis25/ode/sim/accuracy", "metrics/rig/nra/snr", "metrics/twin/nra/sde/w1"):
        assert tag in tags["scalars"], tag
    assert len(ea.Scalars("train/vis25/sde/loss")) == 2
    acc = res["networks"]["sde"]["transfer"]["accuracy"]
    assert ea.Scalars("metrics/vis25/sde/transfer/accuracy")[0].value == pytest.approx(acc, rel=1e-6)
    assert any(t.startswith("figures/") for t in tags["images"])
    run_scenario(off, out=tmp_path / "runs" / "off", cache_dir=cache, progress=False)   # cached stages
    assert (tmp_path / "runs" / "off" / "results.json").is_file()
    assert not list((tmp_path / "runs" / "off").glob(EVENT_GLOB))
