"""Pools in station files (bridge.station [pools.NAME]) and in scenarios ([rigs] KIND = "pool:NAME"):
parsing, validation before work, and nado.pipeline.run.open_rigs driving a pool of two in-process servers
(collect through the pool equals collect through a pool of one: the pool's seed contract)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from bridge import RigServer, StationError
from bridge.pool import RigPool
from bridge.station import load_station, parse_station, serve
from bridge.backends.testrigs import LeakyRig
from nado.errors import ConfigError
from nado.pipeline.scenario import load_scenario

MEMBERS = '[{endpoint = "tcp://127.0.0.1:5601", rig = "nra"}, {endpoint = "tcp://127.0.0.1:5602", rig = "nra"}]'


# ---------------------------------------------------------------- station files
def test_station_keeps_checked_pools_beside_its_rigs(tmp_path):
    f = tmp_path / "st.toml"
    f.write_text(textwrap.dedent(f"""
        [rigs.nra]
        backend = "echo"
        [pools.lab]
        members = {MEMBERS}
        chunk = 8
    """))
    st = load_station(f)
    assert [r.name for r in st.rigs] == ["nra"]
    assert list(st.pools) == ["lab"] and st.pools["lab"]["chunk"] == 8
    assert [m.endpoint for m in st.pools["lab"]["members"]] == ["tcp://127.0.0.1:5601", "tcp://127.0.0.1:5602"]
    assert "pools" not in st.settings


def test_a_pools_only_station_parses_but_is_not_served():
    st = parse_station({"pools": {"lab": {"members": [{"endpoint": "tcp://h:1", "rig": "nra"}]}}})
    assert st.rigs == () and list(st.pools) == ["lab"]
    with pytest.raises(StationError, match="only pools"):
        serve(st, "inproc://never")


def test_bad_pool_tables_and_unknown_tables_are_refused():
    with pytest.raises(StationError, match=r"pools\.lab\.members"):
        parse_station({"rigs": {"a": {"backend": "echo"}}, "pools": {"lab": {"members": []}}})
    with pytest.raises(StationError, match=r"pools\.lab\.speed: unknown key"):
        parse_station({"rigs": {"a": {"backend": "echo"}},
                       "pools": {"lab": {"members": [["tcp://h:1", "a"]], "speed": 2}}})
    with pytest.raises(StationError, match="unknown top-level"):
        parse_station({"rigs": {"a": {"backend": "echo"}}, "pool": {}})
    with pytest.raises(StationError, match="no rigs"):
        parse_station({"pools": {}})


# ---------------------------------------------------------------- scenarios
SCENARIO = """
[run]
name = "pooled"
[station]
{station}
[rigs]
nra = "{rig}"
{pools}
[collect]
sequences = 32
length = 5
repeats = [4, 2]
resets = 8
batch = 16
{collect}
[task]
kind = "digits"
[network]
layers = ["nra"]
nodes = [8]
"""


def _scenario(tmp_path: Path, *, rig="pool:lab", pools=None, station='path = "builtin"', collect="",
              members=MEMBERS) -> Path:
    if pools is None:
        pools = f"[pools.lab]\nmembers = {members}\ntimeout_s = 20.0\n"
    f = tmp_path / "sc.toml"
    f.write_text(SCENARIO.format(station=station, rig=rig, pools=pools, collect=collect))
    return f


def test_scenario_names_a_pool_of_its_own(tmp_path):
    sc = load_scenario(_scenario(tmp_path))
    assert sc.pool_name("nra") == "lab" and sc.pool_table("lab")["timeout_s"] == 20.0
    assert sc.to_dict()["pools"]["lab"]["members"][1]["endpoint"] == "tcp://127.0.0.1:5602"


def test_scenario_finds_the_pool_in_its_station_file(tmp_path):
    (tmp_path / "st.toml").write_text(f"[pools.lab]\nmembers = {MEMBERS}\n")
    sc = load_scenario(_scenario(tmp_path, pools="", station='path = "st.toml"'))
    assert [m["rig"] for m in sc.pool_table("lab")["members"]] == ["nra", "nra"]


def test_scenario_pool_errors_are_found_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r'rigs.nra = "pool:other".*no \[pools.other\]'):
        load_scenario(_scenario(tmp_path, rig="pool:other"))
    with pytest.raises(ConfigError, match=r'collect.mode = "long".*reset=False.*pool'):
        load_scenario(_scenario(tmp_path, collect='mode = "long"'))
    with pytest.raises(ConfigError, match=r"pools\.lab\.members\[0\]\.endpoint"):
        load_scenario(_scenario(tmp_path, members='[{endpoint = "nowhere", rig = "nra"}]'))
    with pytest.raises(ConfigError, match=r"pools\.lab\.chunk"):
        load_scenario(_scenario(tmp_path, pools=f"[pools.lab]\nmembers = {MEMBERS}\nchunk = 0\n"))


@pytest.fixture
def two_servers():
    servers = [RigServer({"nra": LeakyRig("nra", n_out=2, seed=3)}, "tcp://127.0.0.1:*").start()
               for _ in range(2)]
    yield [s.endpoints[0] for s in servers]
    for s in servers:
        s.close()


def _members(endpoints) -> str:
    return "[" + ", ".join(f'{{endpoint = "{e}", rig = "nra"}}' for e in endpoints) + "]"


def test_open_rigs_drives_a_kind_through_a_pool_of_two_servers(tmp_path, two_servers):
    from nado.data.collect import collect
    from nado.pipeline.run import open_rigs
    sc = load_scenario(_scenario(tmp_path, members=_members(two_servers),
                                 pools=f"[pools.lab]\nmembers = {_members(two_servers)}\nchunk = 4\n"))
    with open_rigs(sc) as (endpoint, clients):
        pool = clients["nra"]
        assert endpoint is None                                  # every kind pooled: no station started
        assert isinstance(pool, RigPool) and pool.describe()["source"].startswith("pool://")
        assert pool.timeout_s == sc.station.timeout_s
        ds2 = collect(pool, tmp_path / "two.h5", seed=5, progress=False, active_range=(-1.0, 1.0),
                      **{k: v for k, v in sc.collect.for_kind("nra").items() if k != "active_range"})
        shares = [s for s in pool.status() if s["speed"] is not None]
        assert len(shares) == 2                                  # both members drove experiments
    one = _scenario(tmp_path, members=_members(two_servers[:1]),
                    pools=f"[pools.lab]\nmembers = {_members(two_servers[:1])}\nchunk = 4\n")
    with open_rigs(load_scenario(one)) as (_, clients):
        ds1 = collect(clients["nra"], tmp_path / "one.h5", seed=5, progress=False, active_range=(-1.0, 1.0),
                      **{k: v for k, v in sc.collect.for_kind("nra").items() if k != "active_range"})
    assert ds2.dynamics_inputs.shape == (32, 5, 1) and ds2.dynamics_outputs.shape == (32, 5, 2)
    np.testing.assert_array_equal(ds2.dynamics_outputs, ds1.dynamics_outputs)   # independent of the member count
    np.testing.assert_array_equal(ds2.repeats_outputs, ds1.repeats_outputs)


def test_a_dead_pool_fails_at_open_with_a_clear_error(tmp_path):
    from bridge.errors import RigUnavailable
    from nado.pipeline.run import open_rigs
    sc = load_scenario(_scenario(tmp_path, pools=f"[pools.lab]\nmembers = {MEMBERS}\ntimeout_s = 0.3\n"))
    with pytest.raises(RigUnavailable, match="no member answers"):
        with open_rigs(sc):
            pass
