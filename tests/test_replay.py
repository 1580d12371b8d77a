"""backend = "replay": a `nado collect` file served as a rig, round trip through the bus."""

import h5py
import numpy as np
import pytest

from bridge.errors import BadInput, RigError, StationError
from bridge.backends.replay import ReplayRig
from bridge.station import build_rigs, parse_station
from bridge.backends.testrigs import LeakyRig
from nado.data.collect import collect
from nado.data.dataset import Dataset, load_dataset, save_dataset




@pytest.fixture
def recorded(tmp_path, served):
    """A small dataset collected from a noisy leaky rig through the bus."""
    client = served({"leaky": LeakyRig("leaky", n_out=3, seed=7)}, "leaky")
    path = tmp_path / "leaky.h5"
    collect(client, path, sequences=6, length=5, repeats=(3, 4), resets=5, seed=1,
            active_range=(-1.0, 1.0), progress=False)
    return path, load_dataset(path)


def test_round_trip_through_the_bus(recorded, served):
    path, ds = recorded
    station = parse_station({"rigs": {"nra_replay": {"backend": "replay", "path": str(path)}}})
    client = served(build_rigs(station), "nra_replay")
    desc = client.describe()
    assert desc["backend"] == "replay" and desc["emulated"] is True
    assert desc["input"]["dims"] == [1] and desc["output"]["dims"] == [3]
    assert desc["recorded"]["backend"] == "leaky" and desc["recorded"]["sequences"] == 6 + 3
    # the dynamics set: every recorded sequence answered with what was measured
    res = client.drive(ds.dynamics_inputs)
    assert np.array_equal(res.outputs, ds.dynamics_outputs)
    assert np.array_equal(res.initial, ds.dynamics_initial)
    assert res.instrument_s == 0.0
    # a prefix of a recorded sequence (a rig is causal)
    res = client.drive(ds.dynamics_inputs[2:3, :3])
    assert np.array_equal(res.outputs[0], ds.dynamics_outputs[2, :3])
    # unrecorded inputs are refused clearly
    unseen = ds.dynamics_inputs[:1].copy()
    unseen[0, 1, 0] += 1e-3
    with pytest.raises(RigError) as info:
        client.drive(unseen)
    assert info.value.code == "BAD_INPUT" and "no recording of experiment 0" in info.value.message
    with pytest.raises(RigError) as info:
        client.drive(ds.dynamics_inputs[:1], reset=False)
    assert info.value.code == "BAD_INPUT" and "reset=True" in info.value.message


def test_repeats_are_chosen_by_seed_or_cycled(recorded):
    path, ds = recorded
    rig = ReplayRig("r", path=path)
    x = ds.repeats_inputs[1:2]
    recs = ds.repeats_outputs[1]  # (R, T, n_out)
    assert not np.allclose(recs[0], recs[1])  # the rig was noisy: the repeats differ
    a, b = rig.drive(x, seed=11), rig.drive(x, seed=11)
    assert np.array_equal(a.outputs, b.outputs)  # same seed, same answer
    picked = {int(np.flatnonzero([np.array_equal(rig.drive(x, seed=s).outputs[0], r) for r in recs])[0])
              for s in range(40)}
    assert picked == set(range(recs.shape[0]))  # every repeat is reachable
    cycled = [rig.drive(x).outputs[0] for _ in range(recs.shape[0])]
    assert all(np.array_equal(c, r) for c, r in zip(cycled, recs))
    # two experiments in one drive, each matched on its own
    both = rig.drive(np.concatenate([ds.dynamics_inputs[4:5], x]), seed=3)
    assert np.array_equal(both.outputs[0], ds.dynamics_outputs[4])


def test_continuation_rows_are_not_served_and_bad_files_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    N, T = 3, 4
    ds = Dataset(dynamics_inputs=rng.uniform(0, 1, (N, T, 1)), dynamics_outputs=rng.normal(size=(N, T, 2)),
                 dynamics_initial=rng.normal(size=(N, 2)), repeats_inputs=rng.uniform(0, 1, (1, T, 1)),
                 repeats_outputs=rng.normal(size=(1, 2, T, 2)), repeats_initial=rng.normal(size=(1, 2, 2)),
                 reset_initial=rng.normal(size=(2, 2)), active_lo=np.zeros(1), active_hi=np.ones(1),
                 attrs={"rig": {"name": "x", "backend": "echo", "input": {"units": "Oe"},
                                "output": {"units": "ohm"}, "step_s": 0.5}},
                 dynamics_reset=np.array([True, False, True]))
    path = save_dataset(ds, tmp_path / "d.h5")
    rig = ReplayRig("r", path=path)
    assert rig.describe()["step_s"] == 0.5 and rig.describe()["output"]["units"] == "ohm"
    assert np.array_equal(rig.drive(ds.dynamics_inputs[[0, 2]]).outputs, ds.dynamics_outputs[[0, 2]])
    with pytest.raises(BadInput, match="no recording"):
        rig.drive(ds.dynamics_inputs[1:2])  # recorded, but as a continuation: not after a reset
    with h5py.File(path, "r+") as f:
        f["dynamics/outputs"][0, 0, 0] += 1.0
    with pytest.raises(StationError, match="corrupt in dynamics/outputs"):
        ReplayRig("r", path=path)
    with pytest.raises(StationError, match="does not exist"):
        ReplayRig("r", path=tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(StationError, match="not an HDF5"):
        ReplayRig("r", path=tmp_path / "junk.h5")
