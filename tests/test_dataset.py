"""HDF5 datasets: round trip, unfinished files refused, corrupted blocks named, splits."""
import h5py
import numpy as np
import pytest

from nado.data.dataset import (Dataset, load_dataset, save_dataset, split_dataset, split_indices,
                          without_test)
from nado.data.store import DatasetWriter
from nado.errors import DatasetError


def make_dataset(seed=0, N=13, T=7, M=5, R=4, K=9, n_in=1, n_out=2):
    rng = np.random.default_rng(seed)
    return Dataset(
        dynamics_inputs=rng.uniform(20, 35, (N, T, n_in)), dynamics_outputs=rng.normal(size=(N, T, n_out)),
        dynamics_initial=rng.normal(size=(N, n_out)),
        repeats_inputs=rng.uniform(20, 35, (M, T, n_in)), repeats_outputs=rng.normal(size=(M, R, T, n_out)),
        repeats_initial=rng.normal(size=(M, R, n_out)), reset_initial=rng.normal(size=(K, n_out)),
        active_lo=np.full(n_in, 20.0), active_hi=np.full(n_in, 35.0),
        attrs={"rig": {"name": "leaky", "input": {"min": 0, "max": 80}}, "seeds": {"collect": 3},
               "instrument_s": 1.5},
        dynamics_reset=(np.arange(N) % 3 == 0))


def assert_same(a: Dataset, b: Dataset):
    for name in ("dynamics_inputs", "dynamics_outputs", "dynamics_initial", "repeats_inputs",
                 "repeats_outputs", "repeats_initial", "reset_initial", "active_lo", "active_hi",
                 "dynamics_reset"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_round_trip(tmp_path):
    ds = make_dataset()
    path = save_dataset(ds, tmp_path / "d.h5", block_rows=4)
    back = load_dataset(path)
    assert_same(ds, back)
    assert back.attrs["rig"] == ds.attrs["rig"]
    assert back.attrs["instrument_s"] == 1.5
    assert back.n_in == 1 and back.n_out == 2
    with h5py.File(path, "r") as f:
        assert f["dynamics/outputs"].chunks is not None
        assert bool(f.attrs["complete"]) is True
        assert len(f["checksums/dynamics/outputs"]) == 4  # 13 rows in blocks of 4


def test_round_trip_empty_repeats(tmp_path):
    ds = make_dataset(M=0)
    back = load_dataset(save_dataset(ds, tmp_path / "d.h5"))
    assert back.repeats_outputs.shape == (0, 4, 7, 2)


def test_existing_file_not_overwritten(tmp_path):
    ds = make_dataset()
    save_dataset(ds, tmp_path / "d.h5")
    with pytest.raises(DatasetError, match="exists"):
        save_dataset(ds, tmp_path / "d.h5")


def test_unfinished_file_refused(tmp_path):
    ds = make_dataset()
    path = tmp_path / "part.h5"
    with DatasetWriter(path, ds.layout(), {"plan": {"seed": 1}}, block_rows=4) as w:
        w.write("dynamics", {"inputs": ds.dynamics_inputs[:4], "outputs": ds.dynamics_outputs[:4],
                             "initial": ds.dynamics_initial[:4], "reset": np.ones(4, np.uint8)})
    with pytest.raises(DatasetError, match=r"unfinished.*--resume"):
        load_dataset(path)
    # resuming with other settings is refused; the same settings continue after row 4
    with pytest.raises(DatasetError, match="plan"):
        DatasetWriter(path, ds.layout(), {"plan": {"seed": 2}})
    with DatasetWriter(path, ds.layout(), {"plan": {"seed": 1}}) as w:
        assert w.done("dynamics") == 4 and w.done("repeats") == 0
        with pytest.raises(DatasetError, match="cannot finish"):
            w.finish()


def test_corrupted_chunk_named(tmp_path):
    ds = make_dataset()
    path = save_dataset(ds, tmp_path / "d.h5", block_rows=4)
    # flip bytes of the second stored chunk of dynamics/outputs on disk (bit rot)
    with h5py.File(path, "r") as f:
        info = f["dynamics/outputs"].id.get_chunk_info(1)
        assert info.chunk_offset[0] == 4
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 3)
        b = fh.read(1)
        fh.seek(info.byte_offset + 3)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(DatasetError, match=r"dynamics/outputs rows 4:8"):
        load_dataset(path)
    assert load_dataset(path, verify=False).dynamics_outputs.shape == (13, 7, 2)


def test_foreign_and_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.h5")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(DatasetError, match="not a nado dataset"):
        load_dataset(tmp_path / "x.h5")
    (tmp_path / "t.h5").write_text("hello")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        load_dataset(tmp_path / "t.h5")


def test_bad_shapes_rejected(tmp_path):
    ds = make_dataset()
    from dataclasses import replace
    bad = replace(ds, repeats_initial=np.zeros((5, 3, 2)))
    with pytest.raises(DatasetError, match="repeats_initial"):
        save_dataset(bad, tmp_path / "d.h5")


def test_split_deterministic_and_disjoint():
    a = split_indices(100, seed=3)
    b = split_indices(100, seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    assert (len(a["train"]), len(a["validation"]), len(a["test"])) == (80, 10, 10)
    assert not np.array_equal(a["test"], split_indices(100, seed=4)["test"])
    parts = split_dataset(make_dataset(), seed=0)
    assert sum(p.dynamics_inputs.shape[0] for p in parts.values()) == 13
    assert sum(p.repeats_outputs.shape[0] for p in parts.values()) == 5
    assert parts["test"].attrs["split"]["name"] == "test"
    with pytest.raises(DatasetError):
        split_indices(10, fractions=(1, -1, 0))


def test_without_test_excludes_exactly_the_test_rows():
    ds = make_dataset(N=40, M=20)
    parts = split_dataset(ds, seed=5)
    fit = without_test(ds, seed=5)
    assert fit.dynamics_inputs.shape[0] == 40 - parts["test"].dynamics_inputs.shape[0]
    test_rows = {r.tobytes() for r in parts["test"].dynamics_inputs}
    assert not test_rows & {r.tobytes() for r in fit.dynamics_inputs}
    test_rep = {r.tobytes() for r in parts["test"].repeats_inputs}
    assert not test_rep & {r.tobytes() for r in fit.repeats_inputs}
