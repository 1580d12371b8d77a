"""EMG gestures: Ninapro DB1, exercise B (the ``S{n}_A1_E2.mat`` files).

A Ninapro DB1 file holds ``emg (n, 10)`` (10 electrodes, 100 Hz, rectified RMS
amplitude), ``restimulus (n, 1)`` (the movement 1..17 being performed, 0 = rest,
relabelled to the actual movement) and ``rerepetition (n, 1)`` (1..10, 0 = rest).
Every movement is repeated 10 times.

:func:`load_ninapro` low-pass filters each recording (causal Butterworth), cuts
one window of ``window`` steps (30 at 100 Hz = 300 ms) from each movement's onset,
splits by repetition (train 1,3,4,6,8,9,10, test 2,5,7) and standardises each
electrode with its training mean and standard deviation (over all windows and
steps; clipped to +-:data:`CLIP_SD`). The loss is taken over steps 12..18
(120-180 ms after onset; :data:`LOSS_WINDOW`, end exclusive 19).

Why standardise (not scale into [0, 1]): the windows start at the onset, so most
samples are near the rest level; scaled by the 99th percentile into [0, 1] their
mean was ~0.05 and a network's pre-activations ``theta x`` stayed within ~0.1 of
zero, which ``h`` maps to the middle of the device's active range - for the NRA
the top of its AMR response, where the response is flat. The devices then saw
nearly constant inputs and their outputs were noise: trained NRA networks reached
20-33 % in simulation (a leaky MLP 95 %). Zero-mean, unit-variance inputs let the
initial weights spread every node's drive over the active range (see
tests/test_tasks_emg.py::test_inputs_are_standardised and
tests/test_network_emg.py).

:func:`write_synthetic` writes files in the same layout (class-specific activation
patterns with per-electrode onset delays, per-repetition gain, per-subject
variation - gains, electrode placement, speed, noise level - and noise) for tests
and demos; the loader reads them like real files. These signals are *synthetic*:
they share the database's layout and protocol (17 movements x 10 repetitions, 10
electrodes, 100 Hz), not its physiology. Real Ninapro DB1 files (``S{n}_A1_E2.mat``,
subjects 1..27) load through the same path: put them in ``task.data_dir`` and set
``task.synthetic = false``.

Shapes: ``inputs (n, window, 10)`` float32, standardised (raw = inputs * scale + offset),
``labels (n,)`` int64 0..16.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import TaskDataError, TaskDataMissing

N_MOVEMENTS, N_ELECTRODES, RATE_HZ = 17, 10, 100.0
TRAIN_REPS = (1, 3, 4, 6, 8, 9, 10)
TEST_REPS = (2, 5, 7)
LOSS_WINDOW = (12, 19)  # steps 12..18 inclusive
CLIP_SD = 5.0  # standardised inputs are clipped to +-5 standard deviations


@dataclass(frozen=True)
class EMGTask:
    """``train_inputs (n, T, 10)``, ``train_labels (n,)``, ``test_*`` likewise;
    ``loss_window`` = (start, stop) steps, stop exclusive; ``subjects`` loaded."""

    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    loss_window: tuple[int, int]
    subjects: tuple[int, ...]
    scale: np.ndarray  # (10,) the per-electrode divisor applied (training std)
    offset: np.ndarray  # (10,) the per-electrode offset subtracted first (training mean)

    @property
    def n_classes(self) -> int:
        return N_MOVEMENTS


def subject_file(folder: str | Path, subject: int) -> Path:
    return Path(folder).expanduser() / f"S{subject}_A1_E2.mat"


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.io import loadmat
    if not path.is_file():
        raise TaskDataMissing(f"Ninapro file not found: {path}; put the DB1 exercise B files "
                              "(S{n}_A1_E2.mat) in task.data_dir, or write synthetic ones with "
                              "nado.tasks.emg.write_synthetic")
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise TaskDataError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    missing = [k for k in ("emg", "restimulus", "rerepetition") if k not in mat]
    if missing:
        raise TaskDataError(f"{path} lacks {', '.join(missing)}: not a Ninapro DB1 file")
    emg = np.asarray(mat["emg"], dtype=np.float64)
    stim = np.asarray(mat["restimulus"]).reshape(-1)
    rep = np.asarray(mat["rerepetition"]).reshape(-1)
    if emg.ndim != 2 or emg.shape[1] != N_ELECTRODES or stim.size != emg.shape[0] \
            or rep.size != emg.shape[0]:
        raise TaskDataError(f"{path}: emg {emg.shape}, restimulus {stim.shape}, rerepetition "
                            f"{rep.shape}; expected (n, {N_ELECTRODES}), (n, 1), (n, 1)")
    return emg, stim.astype(np.int64), rep.astype(np.int64)


def lowpass(emg: np.ndarray, cutoff_hz: float, rate_hz: float = RATE_HZ, order: int = 2) -> np.ndarray:
    """Causal Butterworth low-pass along time (axis 0); cutoff at or above Nyquist = no filter."""
    if cutoff_hz <= 0 or cutoff_hz >= rate_hz / 2:
        return emg
    from scipy.signal import butter, sosfilt
    sos = butter(order, cutoff_hz, fs=rate_hz, output="sos")
    return sosfilt(sos, emg, axis=0)


def onset_windows(emg: np.ndarray, stim: np.ndarray, rep: np.ndarray, window: int,
                  path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One window per (movement, repetition) from the movement's onset:
    ``(windows (m, window, 10), movement (m,), repetition (m,))``."""
    wins, movs, reps = [], [], []
    active = (stim > 0) & (rep > 0)
    starts = np.flatnonzero(active & ~np.r_[False, active[:-1]] |
                            active & np.r_[False, (stim[1:] != stim[:-1]) | (rep[1:] != rep[:-1])])
    for s in starts:
        if s + window > emg.shape[0]:
            continue
        wins.append(emg[s:s + window])
        movs.append(stim[s])
        reps.append(rep[s])
    if not wins:
        raise TaskDataError(f"{path}: no movement onsets found in restimulus/rerepetition")
    movs_a = np.asarray(movs)
    bad = movs_a[(movs_a < 1) | (movs_a > N_MOVEMENTS)]
    if bad.size:
        raise TaskDataError(f"{path}: restimulus holds movement {bad[0]}; exercise B files "
                            f"label movements 1..{N_MOVEMENTS}")
    return np.stack(wins), movs_a, np.asarray(reps)


def load_ninapro(folder: str | Path, subjects=(1,), *, window: int = 30, cutoff_hz: float = 10.0,
                 train_reps=TRAIN_REPS, test_reps=TEST_REPS) -> EMGTask:
    """Load exercise B of the given subjects; see the module docstring."""
    if window <= LOSS_WINDOW[1]:
        raise ValueError(f"window must exceed {LOSS_WINDOW[1]} steps to hold the loss window")
    parts = {"train": ([], []), "test": ([], [])}
    for subject in subjects:
        path = subject_file(folder, subject)
        emg, stim, rep = _read_mat(path)
        wins, movs, reps = onset_windows(lowpass(emg, cutoff_hz), stim, rep, window, path)
        for split, wanted in (("train", train_reps), ("test", test_reps)):
            keep = np.isin(reps, wanted)
            parts[split][0].append(wins[keep])
            parts[split][1].append(movs[keep] - 1)
    xtr, ytr = np.concatenate(parts["train"][0]), np.concatenate(parts["train"][1])
    xte, yte = np.concatenate(parts["test"][0]), np.concatenate(parts["test"][1])
    if len(ytr) == 0 or len(yte) == 0:
        raise TaskDataError(f"subjects {list(subjects)} in {folder} give {len(ytr)} training and "
                            f"{len(yte)} test windows; check the repetition numbers")
    flat = xtr.reshape(-1, N_ELECTRODES)
    offset, scale = flat.mean(0), flat.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    norm = lambda x: np.clip((x - offset) / scale, -CLIP_SD, CLIP_SD).astype(np.float32)  # noqa: E731
    return EMGTask(norm(xtr), ytr.astype(np.int64), norm(xte), yte.astype(np.int64),
                   LOSS_WINDOW, tuple(int(s) for s in subjects), scale, offset)


# --------------------------------------------------------------------- synthetic files
def _class_patterns(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per movement: electrode amplitudes (17, 10) and onset delays in seconds (17, 10)."""
    rng = np.random.default_rng(seed)
    amp = rng.gamma(2.0, 0.5, size=(N_MOVEMENTS, N_ELECTRODES))
    amp *= rng.random((N_MOVEMENTS, N_ELECTRODES)) < 0.7  # some electrodes stay quiet
    delay = rng.uniform(0.0, 0.2, size=(N_MOVEMENTS, N_ELECTRODES))
    return amp, delay


def synthesize_subject(subject: int, *, seed: int = 0, move_s: float = 5.0, rest_s: float = 3.0,
                       noise: float = 0.4, rate_hz: float = RATE_HZ,
                       subject_spread: float = 1.0) -> dict[str, np.ndarray]:
    """One subject's recording in the Ninapro DB1 E2 layout (a dict for ``savemat``).

    Movement m, repetition r: electrode e rises after a class-specific delay to
    ``amp[m, e] * subject[m, e] * shape[r, e] * gain[r]`` with a 80 ms time constant, then decays
    in the rest; plus a rest-level floor and multiplicative and additive noise.
    Movements follow Ninapro's protocol: each repeated 10 times, rest between.

    Subjects differ (scaled by ``subject_spread``; 0 = only the per-electrode gains and the
    per-movement factors ``subject[m, e]``): electrode placement - each electrode also picks up
    a fraction (0..0.35) of its neighbour around the forearm; speed - onset delays and the rise
    and relaxation time constants scaled by a lognormal factor (sd 0.2); and the noise level
    (lognormal factor, sd 0.25).
    """
    amp, delay = _class_patterns(seed)
    rng = np.random.default_rng([seed, subject])
    subj = rng.lognormal(0.0, 0.2, size=N_ELECTRODES) * (1 + 0.3 * rng.standard_normal(amp.shape)).clip(0.3)
    # placement, speed and noise level of this subject (drawn from their own stream, so the
    # draws above stay those of a generator without them)
    srng = np.random.default_rng([seed, subject, 1])
    k = float(subject_spread)
    crosstalk = k * srng.uniform(0.0, 0.35, size=N_ELECTRODES)
    mix = np.eye(N_ELECTRODES) * (1 - crosstalk) + np.roll(np.eye(N_ELECTRODES), 1, axis=1) * crosstalk
    amp = amp @ mix.T                    # electrode e sees (1 - c_e) own + c_e its neighbour e+1
    speed = srng.lognormal(0.0, 0.2 * k)
    delay = delay * speed
    rise_s, relax_s = 0.08 * speed, 0.1 * speed
    noise = noise * srng.lognormal(0.0, 0.25 * k)
    n_move, n_rest = int(round(move_s * rate_hz)), int(round(rest_s * rate_hz))
    per = n_move + n_rest
    n = N_MOVEMENTS * 10 * per + n_rest
    drive = np.zeros((n, N_ELECTRODES))
    stim = np.zeros(n, dtype=np.int64)
    rep = np.zeros(n, dtype=np.int64)
    t_move = np.arange(n_move) / rate_hz
    for m in range(N_MOVEMENTS):
        for r in range(10):
            s = n_rest + (m * 10 + r) * per
            gain = rng.lognormal(0.0, 0.3)
            shape = (1.0 + 0.35 * rng.standard_normal(N_ELECTRODES)).clip(0.1)
            jitter = rng.normal(0.0, 0.02, size=N_ELECTRODES)
            onset = np.clip(delay[m] + jitter, 0.0, None)
            rise = 1.0 - np.exp(-np.clip(t_move[:, None] - onset[None, :], 0.0, None) / rise_s)
            drive[s:s + n_move] = rise * amp[m] * subj[m] * shape * gain
            stim[s:s + n_move] = m + 1
            rep[s:s + n_move] = r + 1
    # muscles relax with a time constant after each movement (first-order smoothing)
    alpha = np.exp(-1.0 / (relax_s * rate_hz))
    env = np.empty_like(drive)
    acc = np.zeros(N_ELECTRODES)
    for i in range(n):
        acc = np.maximum(drive[i], alpha * acc)
        env[i] = acc
    emg = 0.02 + env * rng.lognormal(0.0, noise, size=env.shape) \
        + noise * 0.1 * np.abs(rng.standard_normal(env.shape))
    return {"emg": emg, "stimulus": stim[:, None].astype(np.float64),
            "restimulus": stim[:, None].astype(np.float64),
            "repetition": rep[:, None].astype(np.float64),
            "rerepetition": rep[:, None].astype(np.float64),
            "subject": np.array([[subject]], dtype=np.float64),
            "exercise": np.array([[2]], dtype=np.float64)}


def write_synthetic(folder: str | Path, subjects=(1,), *, seed: int = 0, **kwargs) -> list[Path]:
    """Write ``S{n}_A1_E2.mat`` for each subject into ``folder``; returns the paths.
    ``kwargs`` go to :func:`synthesize_subject` (e.g. shorter ``move_s``/``rest_s``)."""
    from scipy.io import savemat
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for subject in subjects:
        path = subject_file(folder, subject)
        savemat(str(path), synthesize_subject(subject, seed=seed, **kwargs), do_compression=True)
        paths.append(path)
    return paths
