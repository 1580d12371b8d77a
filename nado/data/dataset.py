"""Device datasets: what collection measured, as plain arrays.

Shapes (float64; N dynamics sequences, M repeated sequences, R repeats,
T steps, K reset samples):

- ``dynamics_inputs``  ``(N, T, n_in)``  inputs in the rig's units (e.g. Oe)
- ``dynamics_outputs`` ``(N, T, n_out)`` observable after each step
- ``dynamics_initial`` ``(N, n_out)``    observable after each reset (or, for a
  row that continues the previous one, the observable it started from)
- ``repeats_inputs``   ``(M, T, n_in)``
- ``repeats_outputs``  ``(M, R, T, n_out)``
- ``repeats_initial``  ``(M, R, n_out)``
- ``reset_initial``    ``(K, n_out)``    the reset distribution
- ``active_lo``, ``active_hi`` ``(n_in,)`` the active input range
- ``attrs``: rig description (``rig``), ``seeds``, ``versions``, ``created``,
  ``finished``, ``instrument_s``, the collection ``plan``, ...
- ``dynamics_reset``   ``(N,)`` bool: the row began with a reset (all true
  unless collected as one long sequence with sporadic resets; None = all true)

On disk a dataset is an HDF5 file (layout in :mod:`nado.data.store`):
:func:`save_dataset` / :func:`load_dataset`. Loading refuses unfinished files
and verifies each block's sha256. :func:`split_indices` / :func:`split_dataset`
give the deterministic train / validation / test split every stage shares;
:func:`without_test` is what fitting may see (``nado fit`` holds the test split
out, ``nado twin report`` scores it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .store import DatasetWriter, Layout, read_file
from ..errors import DatasetError

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Dataset:
    dynamics_inputs: np.ndarray
    dynamics_outputs: np.ndarray
    dynamics_initial: np.ndarray
    repeats_inputs: np.ndarray
    repeats_outputs: np.ndarray
    repeats_initial: np.ndarray
    reset_initial: np.ndarray
    active_lo: np.ndarray
    active_hi: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    dynamics_reset: np.ndarray | None = None

    @property
    def n_in(self) -> int:
        return int(self.dynamics_inputs.shape[-1])

    @property
    def n_out(self) -> int:
        return int(self.dynamics_outputs.shape[-1])

    @property
    def resets(self) -> np.ndarray:
        """``(N,)`` bool: which dynamics rows began with a reset."""
        if self.dynamics_reset is None:
            return np.ones(self.dynamics_inputs.shape[0], dtype=bool)
        return np.asarray(self.dynamics_reset, dtype=bool)

    def layout(self) -> Layout:
        N, Td = self.dynamics_inputs.shape[:2]
        M, R, Tr = self.repeats_outputs.shape[:3]
        return Layout(n_dynamics=int(N), t_dynamics=int(Td), n_repeats=int(M), r_repeats=int(R),
                      t_repeats=int(Tr), n_reset=int(self.reset_initial.shape[0]),
                      n_in=self.n_in, n_out=self.n_out)

    def validate(self) -> "Dataset":
        """Raise :class:`DatasetError` naming the first array whose shape is inconsistent."""
        try:
            lay = self.layout()
        except (ValueError, IndexError) as exc:
            raise DatasetError(f"dataset arrays have the wrong rank: {exc}") from exc
        want = {
            "dynamics_inputs": (lay.n_dynamics, lay.t_dynamics, lay.n_in),
            "dynamics_outputs": (lay.n_dynamics, lay.t_dynamics, lay.n_out),
            "dynamics_initial": (lay.n_dynamics, lay.n_out),
            "repeats_inputs": (lay.n_repeats, lay.t_repeats, lay.n_in),
            "repeats_outputs": (lay.n_repeats, lay.r_repeats, lay.t_repeats, lay.n_out),
            "repeats_initial": (lay.n_repeats, lay.r_repeats, lay.n_out),
            "reset_initial": (lay.n_reset, lay.n_out),
            "active_lo": (lay.n_in,), "active_hi": (lay.n_in,),
        }
        for name, shape in want.items():
            got = tuple(np.shape(getattr(self, name)))
            if got != shape:
                raise DatasetError(f"dataset array {name} has shape {got}, expected {shape}")
        if self.dynamics_reset is not None and np.shape(self.dynamics_reset) != (lay.n_dynamics,):
            raise DatasetError(f"dataset array dynamics_reset has shape {np.shape(self.dynamics_reset)}, "
                               f"expected {(lay.n_dynamics,)}")
        return self


def save_dataset(dataset: Dataset, path: str | Path, *, block_rows: int = 256,
                 overwrite: bool = False) -> Path:
    """Write ``dataset`` to ``path`` (HDF5) in blocks of ``block_rows`` rows; return the path.

    Refuses to overwrite an existing file unless ``overwrite``.
    """
    dataset.validate()
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise DatasetError(f"{path} exists; pass overwrite=True or choose another path")
        path.unlink()
    if block_rows < 1:
        raise DatasetError(f"block_rows must be >= 1, got {block_rows}")
    arrays = _to_sections(dataset)
    with DatasetWriter(path, dataset.layout(), resume=False, block_rows=block_rows) as w:
        w.set_attrs({"active_lo": dataset.active_lo, "active_hi": dataset.active_hi})
        w.set_attrs(dataset.attrs)
        for section, named in arrays.items():
            n = dataset.layout().rows(section)
            for start in range(0, n, block_rows):
                w.write(section, {k: v[start:start + block_rows] for k, v in named.items()})
        w.finish()
    return path


def load_dataset(path: str | Path, *, verify: bool = True) -> Dataset:
    """Read a finished dataset file; verify every block's checksum (``verify=True``).

    Raises :class:`DatasetError` for a missing or foreign file, an unfinished file
    (resume it with ``nado collect ... --resume`` or delete it) or a corrupted
    block (named in the message).
    """
    arrays, attrs, _layout, _complete = read_file(path, verify=verify)
    return Dataset(
        dynamics_inputs=arrays["dynamics/inputs"], dynamics_outputs=arrays["dynamics/outputs"],
        dynamics_initial=arrays["dynamics/initial"],
        repeats_inputs=arrays["repeats/inputs"], repeats_outputs=arrays["repeats/outputs"],
        repeats_initial=arrays["repeats/initial"], reset_initial=arrays["reset/initial"],
        active_lo=arrays["active_lo"], active_hi=arrays["active_hi"], attrs=attrs,
        dynamics_reset=arrays["dynamics/reset"].astype(bool))


def _to_sections(ds: Dataset) -> dict[str, dict[str, np.ndarray]]:
    return {
        "dynamics": {"inputs": ds.dynamics_inputs, "outputs": ds.dynamics_outputs,
                     "initial": ds.dynamics_initial, "reset": ds.resets.astype(np.uint8)},
        "repeats": {"inputs": ds.repeats_inputs, "outputs": ds.repeats_outputs,
                    "initial": ds.repeats_initial},
        "reset": {"initial": ds.reset_initial},
    }


def split_indices(n: int, *, seed: int = 0,
                  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> dict[str, np.ndarray]:
    """Deterministic split of ``n`` sequence indices into train / validation / test.

    A permutation from ``numpy.random.default_rng(seed)``; sizes are
    ``round(n * fraction)`` for validation and test (at least 1 each when
    ``n >= 3`` and the fraction is positive), the rest train. Each part is sorted.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise DatasetError(f"fractions must be three non-negative numbers, got {fractions}")
    total = float(sum(fractions))
    perm = np.random.default_rng(seed).permutation(n)

    def size(frac: float) -> int:
        k = int(round(n * frac / total))
        return max(k, 1) if (frac > 0 and n >= 3) else k

    n_val, n_test = size(fractions[1]), size(fractions[2])
    n_val = min(n_val, n)
    n_test = min(n_test, n - n_val)
    parts = {"test": perm[:n_test], "validation": perm[n_test:n_test + n_val],
             "train": perm[n_test + n_val:]}
    return {k: np.sort(parts[k]) for k in SPLITS}


def split_dataset(dataset: Dataset, *, seed: int = 0,
                  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> dict[str, Dataset]:
    """Split dynamics rows and repeated sequences (independently, by :func:`split_indices`).

    Returns ``{"train", "validation", "test"}`` datasets sharing the reset
    distribution, active range and attrs (with ``attrs["split"]`` recorded).
    """
    dyn = split_indices(dataset.dynamics_inputs.shape[0], seed=seed, fractions=fractions)
    rep = split_indices(dataset.repeats_inputs.shape[0], seed=seed + 1, fractions=fractions)
    out = {}
    for name in SPLITS:
        d, r = dyn[name], rep[name]
        out[name] = replace(
            dataset,
            dynamics_inputs=dataset.dynamics_inputs[d], dynamics_outputs=dataset.dynamics_outputs[d],
            dynamics_initial=dataset.dynamics_initial[d], dynamics_reset=dataset.resets[d],
            repeats_inputs=dataset.repeats_inputs[r], repeats_outputs=dataset.repeats_outputs[r],
            repeats_initial=dataset.repeats_initial[r],
            attrs={**dataset.attrs, "split": {"name": name, "seed": seed, "fractions": list(fractions)}})
    return out


def without_test(dataset: Dataset, *, seed: int = 0,
                 fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> Dataset:
    """The dataset minus its test split (train and validation rows): what fitting may see."""
    dyn = split_indices(dataset.dynamics_inputs.shape[0], seed=seed, fractions=fractions)
    rep = split_indices(dataset.repeats_inputs.shape[0], seed=seed + 1, fractions=fractions)
    d = np.sort(np.concatenate([dyn["train"], dyn["validation"]]))
    r = np.sort(np.concatenate([rep["train"], rep["validation"]]))
    return replace(
        dataset,
        dynamics_inputs=dataset.dynamics_inputs[d], dynamics_outputs=dataset.dynamics_outputs[d],
        dynamics_initial=dataset.dynamics_initial[d], dynamics_reset=dataset.resets[d],
        repeats_inputs=dataset.repeats_inputs[r], repeats_outputs=dataset.repeats_outputs[r],
        repeats_initial=dataset.repeats_initial[r],
        attrs={**dataset.attrs, "split": {"name": "train+validation", "seed": seed,
                                          "fractions": list(fractions)}})
