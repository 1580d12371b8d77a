"""Device datasets: what collection measured, as plain arrays.

Shapes (float64; N dynamics sequences, M repeated sequences, R repeats,
T steps, K reset samples):

- ``dynamics_inputs``  ``(N, T, n_in)``  inputs in the rig's units (e.g. Oe)
- ``dynamics_outputs`` ``(N, T, n_out)`` observable after each step
- ``dynamics_initial`` ``(N, n_out)``    observable after each reset
- ``repeats_inputs``   ``(M, T, n_in)``
- ``repeats_outputs``  ``(M, R, T, n_out)``
- ``repeats_initial``  ``(M, R, n_out)``
- ``reset_initial``    ``(K, n_out)``    the reset distribution
- ``active_lo``, ``active_hi`` ``(n_in,)`` the active input range
- ``attrs``: rig description, seeds, versions, time, instrument_s, ...

The HDF5 layout, incremental writing and resuming live beside this class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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

    @property
    def n_in(self) -> int:
        return int(self.dynamics_inputs.shape[-1])

    @property
    def n_out(self) -> int:
        return int(self.dynamics_outputs.shape[-1])
