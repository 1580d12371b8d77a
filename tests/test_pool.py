"""bridge.pool, fast: the seed contract, order and shape of merged results, speed-proportional
shares, failover to the other members, describe mismatches, input errors, pool tables and hooks.
Servers run in this process (tcp on 127.0.0.1) with the bridge's test rigs."""
from __future__ import annotations

import numpy as np
import pytest

from bridge import BadInput, OutOfRange, RigServer, RigUnavailable, StationError
from bridge.pool import (Member, MemberHooks, PoolMismatch, RigPool, chunk_seed, load_pool,
                         parse_pool, parse_pools, reference_drive, split_counts)
from bridge.backends.testrigs import EchoRig, LeakyRig


class _Servers:
    """``servers(rig, ...)`` starts one RigServer per rig; ``.started`` lists them (closed after)."""

    def __init__(self) -> None:
        self.started: list[RigServer] = []

    def __call__(self, *rigs) -> list[tuple[str, str]]:
        out = []
        for rig in rigs:
            s = RigServer({rig.name: rig}, "tcp://127.0.0.1:*").start()
            self.started.append(s)
            out.append((s.endpoints[0], rig.name))
        return out


@pytest.fixture
def servers():
    made = _Servers()
    yield made
    for s in made.started:
        s.close()


def test_split_counts_is_proportional_and_exact():
    assert split_counts(10, [1, 1]) == [5, 5]
    assert split_counts(10, [3, 1]) == [8, 2]             # 7.5 / 2.5: the larger remainder first
    assert split_counts(7, [1, 1, 1]) == [3, 2, 2]
    assert sum(split_counts(1001, [0.3, 2.2, 1.7])) == 1001
    assert split_counts(0, [1, 2]) == [0, 0]
    with pytest.raises(ValueError):
        split_counts(3, [0, 0])


def test_chunk_seeds_are_deterministic_and_distinct():
    assert chunk_seed(5, 0) == chunk_seed(5, 0)
    seeds = {chunk_seed(s, k) for s in range(4) for k in range(50)}
    assert len(seeds) == 200 and all(0 <= v < 2**32 for v in seeds)


def test_seeded_pool_equals_one_rig_driven_chunk_by_chunk(servers):
    members = servers(*(LeakyRig(seed=3) for _ in range(3)))    # one device, three servers
    x = np.random.default_rng(0).uniform(-1, 1, (45, 12, 1))
    ref = reference_drive(LeakyRig(seed=3), x, seed=11, chunk=8)
    with RigPool(members, timeout_s=5, chunk=8) as pool3, RigPool(members[:2], timeout_s=5, chunk=8) as pool2:
        r3, r2 = pool3.drive(x, seed=11), pool2.drive(x, seed=11)
        again = pool3.drive(x, seed=11)
    for r in (r3, r2, again):
        assert r.outputs.shape == (45, 12, 4) and r.initial.shape == (45, 4)
        np.testing.assert_array_equal(r.outputs, ref.outputs)
        np.testing.assert_array_equal(r.initial, ref.initial)
    assert r3.instrument_s == pytest.approx(ref.instrument_s)
    other = RigPool(members, timeout_s=5, chunk=8)
    try:
        assert not np.array_equal(other.drive(x, seed=12).outputs, ref.outputs)
    finally:
        other.close()


def test_unseeded_drive_merges_shares_in_order(servers):
    members = servers(EchoRig(), EchoRig(), EchoRig())
    x = np.arange(101 * 3, dtype=float).reshape(101, 3, 1)
    with RigPool(members, timeout_s=5) as pool:
        r = pool.drive(x)
        np.testing.assert_array_equal(r.outputs, x)             # echo: outputs are the inputs
        shares = [v["experiments"] for v in pool.last["members"].values()]
        assert sorted(shares) == [33, 34, 34] and pool.last["rounds"] == 1
        assert all(s["speed"] > 0 for s in pool.status())


def test_shares_follow_measured_speed(servers):
    members = servers(EchoRig(), EchoRig())
    with RigPool(members, timeout_s=5) as pool:
        pool._states[0].speed, pool._states[1].speed = 300.0, 100.0   # as if measured
        pool._update_speed = lambda s, v: None                        # keep them fixed here
        pool.drive(np.zeros((100, 2, 1)))
        assert [v["experiments"] for v in pool.last["members"].values()] == [75, 25]


def test_a_member_lost_after_connect_loses_nothing(servers):
    made = servers(EchoRig(), EchoRig(), EchoRig())
    x = np.random.default_rng(1).normal(size=(60, 4, 1))
    with RigPool(made, timeout_s=0.5, down_s=60) as pool:
        dead = made[1][0]
        servers.started[1].close()        # that member's share times out and moves to the others
        r = pool.drive(x)
        np.testing.assert_array_equal(r.outputs, x)
        st = {s["endpoint"]: s for s in pool.status()}
        assert st[dead]["down"] and "RigTimeout" in st[dead]["error"]
        assert pool.last["rounds"] == 2 and pool.last["members"][f"{dead}/echo"]["failed"] > 0
        r2 = pool.drive(x)                                            # the down member sits out
        np.testing.assert_array_equal(r2.outputs, x)
        assert f"{dead}/echo" not in pool.last["members"]


def test_unreachable_member_at_connect_is_marked_down(servers):
    members = servers(EchoRig()) + [("tcp://127.0.0.1:1", "echo")]
    with RigPool(members, timeout_s=2, connect_timeout_s=0.3) as pool:
        assert [s["down"] for s in pool.status()] == [False, True]
        np.testing.assert_array_equal(pool.drive(np.ones((5, 2, 1))).outputs, np.ones((5, 2, 1)))
    with pytest.raises(RigUnavailable, match="no member answers"):
        RigPool([("tcp://127.0.0.1:1", "echo")], timeout_s=1, connect_timeout_s=0.2)


def test_every_member_down_raises(servers):
    made = servers(EchoRig())
    with RigPool(made, timeout_s=0.3, down_s=60) as pool:
        servers.started[0].close()
        with pytest.raises(RigUnavailable, match="every member is down"):
            pool.drive(np.zeros((4, 2, 1)))


def test_members_must_describe_the_same_rig(servers):
    with pytest.raises(PoolMismatch, match="kind.*output") as e:
        RigPool(servers(LeakyRig(), EchoRig()), timeout_s=5)
    assert isinstance(e.value, ValueError)
    with pytest.raises(PoolMismatch, match=r"in input \("):
        RigPool(servers(LeakyRig(), LeakyRig(hi=2.0)), timeout_s=5)
    # names, sources and seeds may differ
    with RigPool(servers(LeakyRig("a", seed=1), LeakyRig("b", seed=2)), timeout_s=5, name="lab") as pool:
        d = pool.describe()
        assert d["name"] == "lab" and d["kind"] == "leaky" and len(d["members"]) == 2
        assert d["source"].startswith("pool://")


def test_input_errors_are_raised_not_retried(servers):
    with RigPool(servers(LeakyRig(), LeakyRig()), timeout_s=5) as pool:
        with pytest.raises(OutOfRange):
            pool.drive(np.full((6, 3, 1), 5.0))
        assert not any(s["down"] for s in pool.status())
        with pytest.raises(BadInput, match="reset=False"):
            pool.drive(np.zeros((2, 3, 1)), reset=False)
        with pytest.raises(BadInput, match="seed"):
            pool.drive(np.zeros((2, 3, 1)), seed=-1)
        with pytest.raises(BadInput, match=r"\(B, T, n_in\)"):
            pool.drive(np.zeros((3, 1)))


def test_pool_tables(servers):
    members = servers(EchoRig(), EchoRig())
    table = {"members": [{"endpoint": ep, "rig": rig} for ep, rig in members], "timeout_s": 3,
             "chunk": 4}
    kw = parse_pool(table, "echoes")
    assert kw["members"] == [Member(ep, rig) for ep, rig in members] and kw["chunk"] == 4
    with load_pool(table, "echoes") as pool:
        assert pool.name == "echoes" and pool.chunk == 4 and pool.timeout_s == 3.0
        np.testing.assert_array_equal(pool.drive(np.ones((9, 2, 1)), seed=1).outputs, np.ones((9, 2, 1)))
    bad = [({}, "members"), ({"members": []}, "members"), ({"members": [{"rig": "x"}]}, "members\\[0\\]"),
           ({"members": [{"endpoint": "localhost", "rig": "x"}]}, "endpoint"),
           ({"members": members, "chunk": 0}, "chunk"), ({"members": members, "speed": 1}, "speed"),
           ({"members": members, "timeout_s": 0}, "timeout_s")]
    for t, what in bad:
        with pytest.raises(StationError, match=what):
            parse_pool(t, "p")
    with pytest.raises(StationError, match="repeat"):
        RigPool([members[0], members[0]])
    import tomllib
    text = ("[rigs.nra]\nbackend = 'physics.nra'\n\n[pools.nras]\nchunk = 8\nmembers = [\n"
            "  {endpoint = 'tcp://pc1:5555', rig = 'nra'},\n  {endpoint = 'tcp://pc2:5555', rig = 'nra'},\n]\n")
    pools = parse_pools(tomllib.loads(text))
    assert list(pools) == ["nras"] and pools["nras"]["chunk"] == 8
    assert [m.endpoint for m in pools["nras"]["members"]] == ["tcp://pc1:5555", "tcp://pc2:5555"]
    with pytest.raises(StationError, match="pools.bad.members"):
        parse_pools({"pools": {"bad": {"members": "tcp://x:1"}}})


def test_hooks_see_each_member(servers):
    calls = []

    class Hooks(MemberHooks):
        def connect(self, member, client):
            calls.append(("connect", member.endpoint))

        def alive(self, member):
            return member.endpoint != members[1][0]                  # e.g. a missed heartbeat

        def release(self, member, client):
            calls.append(("release", member.endpoint))

    members = servers(EchoRig(), EchoRig())
    with RigPool(members, timeout_s=5, hooks=Hooks()) as pool:
        pool.drive(np.zeros((10, 2, 1)))
        assert list(pool.last["members"]) == [f"{members[0][0]}/echo"]
    assert sorted(calls) == sorted([("connect", members[0][0]), ("connect", members[1][0]),
                                    ("release", members[0][0]), ("release", members[1][0])])
