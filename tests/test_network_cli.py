"""`nado train` then `nado transfer` on a scenario, through a station of LeakyRigs (in-process)."""
import pytest
import json

from nado.cli import main

STATION = """
[rigs.nra]
backend = "leaky"
n_out = 1
lo = 0.0
hi = 80.0
gain = 0.05
leak = [0.5, 0.5]
seed = 0
"""

SCENARIO = """
[run]
name = "cli"
seed = 0
[station]
path = "station.toml"
bind = "inproc"
[rigs]
nra = "nra"
[task]
kind = "digits"
visibility = [25]
n_train = 100
n_test = 40
[network]
layers = ["nra", "nra"]
nodes = [4, 3]
[train]
epochs = 1
batch_size = 32
[variants]
list = ["sde", "ode", "rc", "rc1", "leaky"]
"""


def _twins(folder):
    from nado.twin import Twin, TwinConfig
    from nado.twin.checkpoint import save_twin
    for k in ("ode", "sde"):
        cfg = TwinConfig(kind=k, n_in=1, n_obs=1, n_delay=2, n_aux=2 if k == "sde" else 0, width=8, depth=1,
                         input_lo=(0.0,), input_hi=(80.0,), obs_mean=(0.3,), obs_std=(0.3,))
        save_twin(Twin(cfg), folder / f"nra-{k}.pt")


@pytest.mark.e2e
def test_train_then_transfer(tmp_path, capsys):
    (tmp_path / "station.toml").write_text(STATION)
    (tmp_path / "scen.toml").write_text(SCENARIO)
    _twins(tmp_path / "twins")
    common = [str(tmp_path / "scen.toml"), "--twins", str(tmp_path / "twins"), "--out", str(tmp_path / "out"),
              "--no-progress"]
    assert main(["train", *common]) == 0
    trained = json.loads((tmp_path / "out" / "train.json").read_text())["vis25"]
    assert set(trained) == {"sde", "ode", "leaky"}
    assert (tmp_path / "out" / "networks" / "vis25" / "sde.pt").is_file()
    assert all(0 <= trained[v]["sim"]["accuracy"] <= 1 and len(trained[v]["history"]["loss"]) == 1
               for v in trained)
    assert main(["transfer", *common]) == 0
    res = json.loads((tmp_path / "out" / "transfer.json").read_text())["vis25"]
    assert set(res) == {"sde", "ode", "rc", "rc1", "leaky"}
    for v in ("sde", "ode", "rc", "rc1"):
        assert 0 <= res[v]["transfer"]["accuracy"] <= 1
    assert res["sde"]["drives"] == [1, 1] and res["leaky"]["transfer"] is None
    assert "transfer" in capsys.readouterr().out


def test_missing_twins_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "station.toml").write_text(STATION)
    (tmp_path / "scen.toml").write_text(SCENARIO)
    rc = main(["train", str(tmp_path / "scen.toml"), "--twins", str(tmp_path / "nope"), "--out",
               str(tmp_path / "out")])
    assert rc == 1 and "nado fit" in capsys.readouterr().err
