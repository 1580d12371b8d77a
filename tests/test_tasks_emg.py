"""EMG gestures: the Ninapro DB1 layout read from a file scipy wrote, and the synthetic files."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from nado.tasks import TaskDataError, TaskDataMissing
from nado.tasks import emg as E


def ninapro_like(seed=0, rest=40, move=50):
    """A hand-built recording: movement m, repetition r shows emg = m + r/100 on every electrode."""
    rng = np.random.default_rng(seed)
    emg, stim, rep = [np.zeros((rest, 10))], [np.zeros(rest)], [np.zeros(rest)]
    for m in range(1, 18):
        for r in range(1, 11):
            emg.append(np.full((move, 10), m + r / 100.0) + 0 * rng.random((move, 10)))
            stim.append(np.full(move, m))
            rep.append(np.full(move, r))
            emg.append(np.zeros((rest, 10)))
            stim.append(np.zeros(rest))
            rep.append(np.zeros(rest))
    return {"emg": np.concatenate(emg), "restimulus": np.concatenate(stim)[:, None].astype(np.uint8),
            "rerepetition": np.concatenate(rep)[:, None].astype(np.uint8)}


def test_loads_a_file_written_by_scipy(tmp_path):
    savemat(tmp_path / "S4_A1_E2.mat", ninapro_like())
    task = E.load_ninapro(tmp_path, subjects=(4,), cutoff_hz=0)  # no filter: values stay exact
    assert task.train_inputs.shape == (17 * 7, 30, 10) and task.test_inputs.shape == (17 * 3, 30, 10)
    assert task.loss_window == (12, 19) and task.subjects == (4,)
    assert sorted(set(task.train_labels.tolist())) == list(range(17))
    # window starts at the onset: every step of a window holds that movement's level
    raw_train = task.train_inputs.astype(np.float64) * task.scale + task.offset
    raw_test = task.test_inputs.astype(np.float64) * task.scale + task.offset
    m = np.round(raw_train[:, 0, 0]).astype(int)
    np.testing.assert_array_equal(m - 1, task.train_labels)
    reps_tr = np.round((raw_train[:, 0, 0] - m) * 100).astype(int)
    reps_te = np.round((raw_test[:, 0, 0] - np.round(raw_test[:, 0, 0])) * 100).astype(int)
    assert set(reps_tr.tolist()) == set(E.TRAIN_REPS) and set(reps_te.tolist()) == set(E.TEST_REPS)
    assert np.allclose(raw_train[:, 0], raw_train[:, 29], atol=1e-5)
    assert np.abs(task.train_inputs).max() <= E.CLIP_SD


def test_inputs_are_standardised(tmp_path):
    """Regression (EMG did not learn): inputs scaled into [0, 1] by the 99th percentile had a
    mean of ~0.05, so a network's pre-activations stayed near 0 and every NRA node sat at the
    flat top of its response. The loader now standardises each electrode on the training set."""
    E.write_synthetic(tmp_path, subjects=(1,), seed=3, move_s=1.0, rest_s=0.5)
    task = E.load_ninapro(tmp_path, subjects=(1,))
    flat = task.train_inputs.reshape(-1, 10).astype(np.float64)
    # mean 0 and std 1 before clipping at 5 sd; the heavy-tailed synthetic noise loses up to ~20 %
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=0.1)
    assert np.all((flat.std(0) > 0.7) & (flat.std(0) <= 1.0 + 1e-6))
    # the loss window carries the class information at unit scale, not squeezed near one value
    win = task.train_inputs[:, 12:19].mean(1)
    assert win.std(0).mean() > 0.5


def test_lowpass_smooths_and_is_causal():
    x = np.zeros((100, 10))
    x[50:] = 1.0
    y = E.lowpass(x, 5.0)
    assert np.all(y[:50] == 0)  # nothing before the step
    assert 0.0 < y[51, 0] < 0.9 and abs(y[-1, 0] - 1.0) < 1e-3


def test_bad_files_fail_clearly(tmp_path):
    with pytest.raises(TaskDataMissing, match="S9_A1_E2.mat"):
        E.load_ninapro(tmp_path, subjects=(9,))
    savemat(tmp_path / "S1_A1_E2.mat", {"emg": np.zeros((10, 10))})
    with pytest.raises(TaskDataError, match="lacks restimulus, rerepetition"):
        E.load_ninapro(tmp_path)
    (tmp_path / "S2_A1_E2.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(TaskDataError, match="S2_A1_E2.mat"):
        E.load_ninapro(tmp_path, subjects=(2,))
    bad = ninapro_like()
    bad["restimulus"] = bad["restimulus"].astype(np.int64) + 17  # exercise C numbering
    savemat(tmp_path / "S3_A1_E2.mat", bad)
    with pytest.raises(TaskDataError, match="movement 18"):
        E.load_ninapro(tmp_path, subjects=(3,))


def test_synthetic_files_load_like_real_ones(tmp_path):
    paths = E.write_synthetic(tmp_path, subjects=(1, 2), seed=0, move_s=0.5, rest_s=0.4)
    assert [p.name for p in paths] == ["S1_A1_E2.mat", "S2_A1_E2.mat"]
    from scipy.io import loadmat
    mat = loadmat(paths[0])
    assert mat["emg"].shape[1] == 10 and mat["restimulus"].shape[1] == 1
    assert set(np.unique(mat["restimulus"])) == set(range(18))
    task = E.load_ninapro(tmp_path, subjects=(1, 2))
    assert task.train_inputs.shape == (2 * 17 * 7, 30, 10)
    assert np.bincount(task.test_labels).tolist() == [6] * 17
    # class-specific patterns: a nearest-class-mean rule on the loss window beats chance by far
    win = slice(*task.loss_window)
    means = np.stack([task.train_inputs[task.train_labels == c, win].mean(0) for c in range(17)])
    d = ((task.test_inputs[:, None, win] - means[None]) ** 2).sum(axis=(2, 3))
    acc = np.mean(d.argmin(1) == task.test_labels)
    assert acc > 0.5, acc  # chance is 1/17
    # and the same seed writes the same data
    E.write_synthetic(tmp_path / "again", subjects=(1,), seed=0, move_s=0.5, rest_s=0.4)
    np.testing.assert_array_equal(loadmat(tmp_path / "again" / "S1_A1_E2.mat")["emg"], mat["emg"])
