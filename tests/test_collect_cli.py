"""The data commands end to end on a tiny leaky rig: collect -> fit ode -> fit sde -> report -> serve."""
import json

import numpy as np
import pytest

from nado.cli import main

pytestmark = pytest.mark.e2e   # runs a pipeline end to end (make test-fast skips it)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "station.toml").write_text('[rigs.leaky]\nbackend = "leaky"\nn_out = 1\nseed = 1\n'
                                    'lo = 0.0\nhi = 80.0\ngain = 0.05\n')
    return d


def test_collect_fit_report_serve(workdir, capsys):
    data = str(workdir / "data.h5")
    base = ["collect", "--station", str(workdir / "station.toml"), "--rig", "leaky", "--out", data,
            "--sequences", "60", "--length", "8", "--repeats", "20", "10", "--resets", "30",
            "--batch", "16", "--no-progress"]
    assert main(base) == 0
    assert main(base) == 1                     # exists, no --resume: a clear error
    assert "--resume" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 0      # finished file with the same plan: returned as is
    small = ["--width", "8", "--depth", "1", "--n-delay", "1", "--no-progress"]
    assert main(["fit", "ode", data, "--out", str(workdir / "ode.pt"), "--epochs", "2"] + small) == 0
    assert main(["fit", "sde", data, "--out", str(workdir / "sde.pt"), "--ode", str(workdir / "ode.pt"),
                 "--warm-iters", "10", "--gan-iters", "4", "--n-aux", "2"] + small) == 0
    meta = json.loads((workdir / "sde.json").read_text())
    assert meta["extra"]["rig"]["name"] == "leaky" and meta["extra"]["ode_checkpoint"].endswith("ode.pt")
    capsys.readouterr()
    assert main(["twin", "report", str(workdir / "sde.pt"), data, "--out", str(workdir / "rep"),
                 "--samples", "20", "--no-figures"]) == 0
    report = json.loads((workdir / "rep" / "twin_report.json").read_text())
    assert set(report) == {"ode", "sde"}                     # the ODE found through the SDE's record
    assert report["ode"]["std_ratio"] == 0.0 and np.isfinite(report["sde"]["w1"])

    # the fitted twin served as a rig through an in-process station
    from bridge import RigClient
    from bridge.station import serve
    (workdir / "twin.toml").write_text(f'[rigs.tw]\nbackend = "sde"\ncheckpoint = "{workdir / "sde.pt"}"\n')
    server = serve(str(workdir / "twin.toml"), "inproc://test-collect-cli-twin")
    try:
        with RigClient("inproc://test-collect-cli-twin", "tw") as c:
            d = c.describe()
            lo, hi = d["input"]["min"], d["input"]["max"]
            res = c.drive(np.full((4, 8, 1), (lo + hi) / 2), seed=0)
            assert res.outputs.shape == (4, 8, 1) and d["step_s"] == 0.01
    finally:
        server.close()


def test_report_of_unfinished_dataset_fails_clearly(workdir, capsys):
    from nado.data.store import DatasetWriter, Layout
    part = workdir / "part.h5"
    DatasetWriter(part, Layout(4, 3, 2, 2, 3, 2, 1, 1)).close()
    assert main(["fit", "ode", str(part), "--out", str(workdir / "x.pt")]) == 1
    assert "unfinished" in capsys.readouterr().err
