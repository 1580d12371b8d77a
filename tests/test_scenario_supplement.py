"""The structured supplement of a dataset's dynamics set ([collect] holds)."""
from __future__ import annotations

import numpy as np
import pytest

from nado.data.dataset import Dataset
from nado.data.supplement import drive_holds, hold_sequences, with_holds


def test_hold_sequences_hold_and_reach_the_ends():
    x = hold_sequences(300, 20, 10.0, 30.0, hold_max=6, seed=1)
    assert x.shape == (300, 20, 1)
    assert x.min() >= 10.0 and x.max() <= 30.0
    frac_ends = np.mean((x == 10.0) | (x == 30.0))
    assert 0.35 < frac_ends < 0.65  # half the holds sit at an end of the range
    # runs of equal values never exceed hold_max... unless two holds draw the same end
    change = np.diff(x[..., 0], axis=1) != 0
    assert change.mean() < 0.5  # held, unlike uniform inputs (which change at every step)
    np.testing.assert_array_equal(x, hold_sequences(300, 20, 10.0, 30.0, hold_max=6, seed=1))
    with pytest.raises(ValueError):
        hold_sequences(1, 5, 3.0, 3.0)


class _Rig:
    def describe(self):
        return {"name": "fake", "input": {"dims": [1], "min": 0, "max": 100}, "output": {"dims": [1]}}

    def drive(self, inputs, *, reset=True, seed=None):
        from bridge.rig import DriveResult
        x = np.asarray(inputs, float)
        return DriveResult(2 * x, np.zeros((len(x), 1)), instrument_s=float(x.shape[0] * x.shape[1]))


def test_drive_and_append_to_the_train_split():
    h = drive_holds(_Rig(), 7, 5, 1.0, 2.0, batch=3, seed=0)
    assert h["outputs"].shape == (7, 5, 1) and h["instrument_s"] == 35.0
    np.testing.assert_allclose(h["outputs"], 2 * h["inputs"])
    z = np.zeros
    ds = Dataset(z((4, 5, 1)), z((4, 5, 1)), z((4, 1)), z((2, 5, 1)), z((2, 3, 5, 1)), z((2, 3, 1)),
                 z((6, 1)), np.array([1.0]), np.array([2.0]), dynamics_reset=np.array([1, 0, 1, 0], bool))
    out = with_holds(ds, h)
    assert out.dynamics_inputs.shape == (11, 5, 1)
    assert out.resets.tolist() == [True, False, True, False] + [True] * 7
    assert out.repeats_outputs is ds.repeats_outputs  # the repeats set is untouched
