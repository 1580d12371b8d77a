"""Scenario files: every shipped file validates; bad keys and values fail naming the key."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from nado.errors import ConfigError
from nado.pipeline.cache import StageCache, stage_key
from nado.pipeline.scenario import dump_toml, load_scenario, merge, validate
from nado.data.snr import snr_from_repeats

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))

MINIMAL = {"task": {"kind": "digits"}, "network": {"layers": ["nra", "nra"]}}


def test_the_paper_scenarios_ship():
    names = {p.stem for p in SCENARIOS}
    for base in ("quickstart", "mnist_nra", "mackey_glass_cascade", "emg_nra"):
        assert base in names and f"{base}_real" in names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
@pytest.mark.parametrize("quick", [False, True])
def test_every_scenario_validates(path, quick):
    sc = load_scenario(path, quick=quick)
    assert sc.kinds and sc.variants.names
    cfg = sc.train_config()
    assert len(cfg.nodes) == len(sc.network.layers)
    # the resolved form round-trips through TOML
    again = validate(tomllib.loads(dump_toml(sc.to_dict())), source=str(path))
    assert again.to_dict() == sc.to_dict()


@pytest.mark.parametrize("base", ["quickstart", "mnist_nra", "mackey_glass_cascade", "emg_nra"])
def test_real_versions_differ_only_in_station(base):
    emu = tomllib.loads((ROOT / "scenarios" / f"{base}.toml").read_text())
    real = tomllib.loads((ROOT / "scenarios" / f"{base}_real.toml").read_text())
    assert real["station"]["path"] == "stations/real.toml"
    assert (ROOT / "scenarios" / "stations" / "real.toml").is_file()
    for d in (emu, real):
        d.pop("station")
        d["run"].pop("name", None)   # quickstart: no name (the file stem); see test_scenario_swap.py
    assert emu == real


def test_quick_merges_the_budget():
    sc = load_scenario(ROOT / "scenarios" / "quickstart.toml")
    q = load_scenario(ROOT / "scenarios" / "quickstart.toml", quick=True)
    assert q.collect.sequences < sc.collect.sequences
    assert q.train_config().epochs < sc.train_config().epochs
    assert q.network.layers == sc.network.layers  # same code path, smaller numbers


def test_defaults_fill_in():
    sc = validate(MINIMAL)
    assert sc.run.seed == 0 and sc.station.path == "builtin"
    assert sc.variants.names == ("sde", "ode", "rc")
    assert sc.collect.for_kind("nra")["repeats"] == (100, 50)
    assert sc.rig_name("nra") == "nra"


@pytest.mark.parametrize("patch, key", [
    ({"bogus": {}}, "scenario.bogus"),
    ({"run": {"seeds": 1}}, "run.seeds"),
    ({"run": {"seed": -1}}, "run.seed"),
    ({"run": {"seed": "zero"}}, "run.seed"),
    ({"station": {"bind": "tcp"}}, "station.bind"),
    ({"station": {"endpoint": "localhost:5555"}}, "station.endpoint"),
    ({"collect": {"sequences": 1.5}}, "collect.sequences"),
    ({"collect": {"repeats": [10]}}, "collect.repeats"),
    ({"collect": {"repeats": [10, 1]}}, "collect.repeats[1]"),
    ({"collect": {"asvi": {"mode": "long"}}}, "collect.asvi"),
    ({"collect": {"nra": {"mode": "short"}}}, "collect.nra.mode"),
    ({"collect": {"active_range": {"nra": [30, 10]}}}, "collect.active_range.nra"),
    ({"twins": {"widht": 64}}, "twins.widht"),
    ({"twins": {"nra": {"n_delay": -1}}}, "twins.nra.n_delay"),
    ({"twins": {"ode": {"epochz": 3}}}, "twins.ode.epochz"),
    ({"task": {"kind": "cifar"}}, "task.kind"),
    ({"task": {"visibility": [30]}}, "task.visibility[0]"),
    ({"task": {"horizons": [1]}}, "task.horizons"),
    ({"task": {"kind": "mnist"}}, "task.data_dir"),
    ({"task": {"kind": "mackey_glass", "n_samples": 2000}}, "task.n_samples"),
    ({"task": {"kind": "emg", "data_dir": "x", "window": 15}}, "task.window"),
    ({"network": {"layers": []}}, "network.layers"),
    ({"network": {"nodes": [8]}}, "network.nodes"),
    ({"network": {"sizes": [8, 8]}}, "network.sizes"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"optimizer": "sgd"}}, "optimizer"),
    ({"train": {"leeky": {"lr": 0.1}}}, "train.leeky"),
    ({"train": {"leaky": {"nodes": [8, 8]}}}, "train.leaky.nodes"),
    ({"train": {"leaky": {"lr": -1.0}}}, "[train.leaky]"),
    ({"train": {"mlp": {"optimizer": "sgd"}}}, "[train.mlp]"),
    ({"variants": {"list": ["sde", "cascade"]}}, "variants.list[1]"),
    ({"variants": {"depths": [3]}}, "variants.depths"),
    ({"budget": {"train": {"epochs": -2}}}, "train.epochs"),
    ({"budget": {"network": {"nodez": 3}}}, "network.nodez"),
    ({"budget": {"nonsense": {}}}, "budget.nonsense"),
])
def test_bad_keys_and_values_name_the_key(patch, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate(merge(MINIMAL, patch))


def test_a_variant_table_of_train_applies_to_that_variant_and_round_trips():
    from nado.pipeline.scenario import variant_config
    sc = validate(merge(MINIMAL, {"train": {"lr": 0.002, "leaky": {"lr": 0.005, "epochs": 4}}}))
    base = sc.train_config()
    assert base.lr == 0.002 and sc.train_by_variant == {"leaky": {"lr": 0.005, "epochs": 4}}
    leaky = variant_config(base, sc.train_by_variant, "leaky")
    assert (leaky.lr, leaky.epochs, leaky.nodes) == (0.005, 4, base.nodes)
    assert variant_config(base, sc.train_by_variant, "sde") is base     # its stage key unchanged
    again = validate(tomllib.loads(dump_toml(sc.to_dict())))
    assert again.train_by_variant == sc.train_by_variant and again.to_dict() == sc.to_dict()


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(bad)
    bad.write_text('[task]\nkind = "digits"\n[network]\nlayers = ["nra"]\nnodes = [0]\n')
    with pytest.raises(ConfigError, match=r"bad.toml: network.nodes\[0\]"):
        load_scenario(bad)


def test_paths_resolve_against_the_scenario_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "s.toml"
    f.write_text('[task]\nkind = "mnist"\ndata_dir = "../mnist"\n[network]\nlayers = ["nra"]\n')
    sc = load_scenario(f)
    assert sc.resolve_path(sc.task.params["data_dir"]).resolve() == (tmp_path / "mnist").resolve()
    assert sc.to_dict()["task"]["data_dir"] == str((tmp_path / "mnist").resolve())


def test_stage_keys_and_cache(tmp_path):
    assert stage_key("a", {"x": 1, "y": [1, 2]}) == stage_key("a", {"y": [1, 2], "x": 1})
    assert stage_key("a", {"x": 1}) != stage_key("a", {"x": 2}) != stage_key("b", {"x": 2})
    cache = StageCache(tmp_path)
    d, done = cache.lookup("s", {"x": 1})
    assert not done and d.is_dir()
    (d / "out.txt").write_text("result")
    cache.finish(d)
    assert StageCache(tmp_path).lookup("s", {"x": 1}) == (d, True)
    c2 = StageCache(tmp_path)
    d2, done2 = c2.lookup("s", {"x": 2})
    assert not done2 and d2 != d
    # an unfinished stage is redone from an empty folder
    (d2 / "partial").write_text("x")
    c2.release_all()                                   # the run failed mid-stage
    c3 = StageCache(tmp_path)
    d3, done3 = c3.lookup("s", {"x": 2})
    assert d3 == d2 and not done3 and not (d2 / "partial").exists()
    c3.release_all()
    # --fresh recomputes once, then reuses within the run
    fresh = StageCache(tmp_path, fresh=True)
    assert fresh.lookup("s", {"x": 1})[1] is False
    fresh.finish(d)
    assert fresh.lookup("s", {"x": 1})[1] is True


def test_snr_definition():
    import numpy as np
    rng = np.random.default_rng(0)
    M, R, T = 200, 50, 10
    signal = rng.normal(0.0, 3.0, size=(M, 1, T, 2))
    noise = rng.normal(0.0, 1.0, size=(M, R, T, 2))
    out = snr_from_repeats(signal + noise)
    # signal std 3 (plus noise/sqrt(R) in the mean), noise 1: SNR about 3 within 5 %
    assert out["snr"] == pytest.approx(3.0, rel=0.05)
    assert len(out["per_channel"]) == 2
    with pytest.raises(ValueError, match="R >= 2"):
        snr_from_repeats(np.zeros((3, 1, 4, 1)))


def test_spread_shape_tells_branches_from_gaussian_noise():
    """The device-level statistics beside the SNR: repeats that split into two branches (a
    noise-induced bifurcation) count as bimodal, Gaussian repeats do not; the 5-95 % width over
    the response range and the spread by step since reset follow what was generated."""
    import numpy as np
    rng = np.random.default_rng(0)
    M, R, T = 100, 40, 8
    mean = rng.uniform(0.0, 10.0, size=(M, 1, T, 1))                      # response range ~10
    branches = mean + np.where(rng.random((M, R, T, 1)) < 0.5, -1.0, 1.0) + rng.normal(0, 0.1, (M, R, T, 1))
    growing = mean + rng.normal(0.0, 1.0, (M, R, T, 1)) * np.linspace(0.5, 1.5, T)[:, None]
    b, g = snr_from_repeats(branches), snr_from_repeats(growing)
    assert b["bimodal_fraction"] > 0.95 and g["bimodal_fraction"] < 0.02, (b["bimodal_fraction"], g["bimodal_fraction"])
    assert b["width_of_range"] == pytest.approx(2.0 / 10.0, rel=0.1)       # +-1 branches over ~10
    sp = g["spread_by_step"]
    assert len(sp) == T and sp[-1] / sp[0] == pytest.approx(3.0, rel=0.15)


def test_rigs_started_from_a_station_file_or_attached(tmp_path):
    from bridge.station import serve
    from nado.pipeline.run import open_rigs
    station = tmp_path / "lab.toml"
    station.write_text('[rigs.ring]\nbackend = "leaky"\nn_out = 1\n')
    f = tmp_path / "s.toml"
    f.write_text('[station]\npath = "lab.toml"\nbind = "inproc"\n[rigs]\nnra = "ring"\n'
                 '[task]\nkind = "digits"\n[network]\nlayers = ["nra"]\n')
    with open_rigs(load_scenario(f)) as (endpoint, clients):
        assert endpoint.startswith("inproc://")
        assert clients["nra"].describe()["name"] == "ring"
    server = serve(station, "inproc://nado-test-attach")
    try:
        f.write_text('[station]\nendpoint = "inproc://nado-test-attach"\n[rigs]\nnra = "ring"\n'
                     '[task]\nkind = "digits"\n[network]\nlayers = ["nra"]\n')
        with open_rigs(load_scenario(f)) as (endpoint, clients):
            assert endpoint == "inproc://nado-test-attach"
            r = clients["nra"].drive([[[0.1], [0.2]]], seed=1)
            assert r.outputs.shape == (1, 2, 1)
    finally:
        server.close()
    f.write_text('[station]\npath = "missing.toml"\n[task]\nkind = "digits"\n[network]\nlayers = ["nra"]\n')
    with pytest.raises(ConfigError, match="station.path"):
        with open_rigs(load_scenario(f)):
            pass


def test_code_digest_follows_the_source(tmp_path, monkeypatch):
    from nado.pipeline.cache import code_digest
    pkg = tmp_path / "fakestage"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "fit.py").write_text("def fit(): return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_digest("fakestage")
    assert code_digest("fakestage") == first
    (pkg / "fit.py").write_text("def fit(): return 2\n")
    assert code_digest("fakestage") != first


def test_dump_toml_writes_valid_toml_for_any_key_and_drops_none():
    tables = {"run": {"name": "r\u00e9sum\u00e9 \U0001F600", "seed": 1, "gone": None},
              "pools": {"lab \u00fc": {"members": [{"endpoint": "tcp://h:1", "rig": "nra"}]}},
              "x": {"f": 0.1, "inf": float("inf"), "nested": {"k\u00f8": [1, 2]}}}
    back = tomllib.loads(dump_toml(tables))
    del tables["run"]["gone"]
    assert back == tables
