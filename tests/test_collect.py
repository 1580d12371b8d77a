"""Collection through the bus (RigServer on inproc): active range, layout, resume, determinism."""

import h5py
import numpy as np
import pytest

from bridge.backends.testrigs import LeakyRig
from nado.data.active_range import range_from_curve, sensitivity_curve
from nado.data.collect import collect, find_active_range
from nado.data.dataset import load_dataset
from nado.errors import ConfigError, DatasetError




def test_sensitivity_curve_of_a_ramp():
    levels = np.linspace(0, 80, 41)
    resp = np.clip((levels - 20) / 15, 0, 1)[:, None]  # dead below 20, saturated above 35
    lo, hi = range_from_curve(levels, sensitivity_curve(levels, resp), 0.1)
    assert 16 <= lo <= 21 and 34 <= hi <= 39
    assert range_from_curve(levels, np.zeros(41), 0.1) == (0.0, 80.0)


def test_active_range_of_a_saturating_leaky_rig(served):
    # x settles at tanh(gain w u): the response moves while |gain w u| < ~1.8, i.e. inside a
    # band we can compute: sech^2 >= 0.1 <=> |u| <= acosh(sqrt(10)) / (gain |w|)
    rig = LeakyRig(n_out=1, gain=10.0, leak=(0.5, 0.5), seed=1)
    expected = np.arccosh(np.sqrt(10)) / (10.0 * abs(rig.w[0, 0]))
    client = served(rig)
    ar = find_active_range(client, seed=0)
    assert ar.lo[0] == pytest.approx(-expected, abs=0.12)
    assert ar.hi[0] == pytest.approx(expected, abs=0.12)
    assert ar.instrument_s > 0 and ar.sensitivity.max() == 1.0
    over = find_active_range(client, override=(-0.2, 0.3))
    assert (over.lo[0], over.hi[0]) == (-0.2, 0.3)
    with pytest.raises(ConfigError, match="active range"):
        find_active_range(client, override=(0.5, 2.0))


KW = dict(sequences=23, length=6, repeats=(5, 4), resets=9, batch=8, seed=7, progress=False)


def test_collect_layout_and_determinism(served, tmp_path):
    client = served(LeakyRig(n_out=2, seed=3))
    ds = collect(client, tmp_path / "a.h5", **KW)
    assert ds.dynamics_inputs.shape == (23, 6, 1) and ds.dynamics_outputs.shape == (23, 6, 2)
    assert ds.repeats_outputs.shape == (5, 4, 6, 2) and ds.repeats_initial.shape == (5, 4, 2)
    assert ds.reset_initial.shape == (9, 2)
    lo, hi = ds.active_lo[0], ds.active_hi[0]
    assert lo <= ds.dynamics_inputs.min() and ds.dynamics_inputs.max() <= hi
    assert ds.resets.all()
    # repeats really are the same inputs driven again, with different noise
    assert np.ptp(ds.repeats_outputs[:, :, -1], axis=1).min() > 0
    assert ds.attrs["rig"]["name"] == "leaky" and ds.attrs["plan"]["sequences"] == 23
    assert ds.attrs["instrument_s"] > 0 and "numpy" in ds.attrs["versions"]
    # all inputs distinct: no sequence duplicated
    flat = ds.dynamics_inputs.reshape(23, -1)
    assert len(np.unique(flat, axis=0)) == 23
    again = collect(client, tmp_path / "b.h5", **KW)
    np.testing.assert_array_equal(ds.dynamics_outputs, again.dynamics_outputs)
    np.testing.assert_array_equal(ds.repeats_outputs, again.repeats_outputs)
    # a finished file with the same plan is returned as is; another plan is refused
    assert collect(client, tmp_path / "a.h5", **KW).dynamics_outputs.shape == (23, 6, 2)
    with pytest.raises(DatasetError, match="finished dataset"):
        collect(client, tmp_path / "a.h5", **{**KW, "seed": 8})


class Stop(Exception):
    pass


def test_resume_after_interruption_is_identical(served, tmp_path):
    client = served(LeakyRig(n_out=2, seed=3))
    ref = collect(client, tmp_path / "ref.h5", **KW)
    path = tmp_path / "part.h5"
    seen = []

    def interrupt_after(k):
        def cb(section, done, total):
            seen.append((section, done))
            if len(seen) == k:
                raise Stop
        return cb

    for k in (2, 4):  # stop in dynamics, then again in repeats
        with pytest.raises(Stop):
            collect(client, path, **KW, on_batch=interrupt_after(len(seen) + k))
        with pytest.raises(DatasetError, match="--resume"):
            load_dataset(path)
    with pytest.raises(DatasetError, match="exists"):
        collect(client, path, **{**KW, "resume": False})
    with pytest.raises(DatasetError, match="plan"):
        collect(client, path, **{**KW, "seed": 99})
    done = collect(client, path, **KW, on_batch=lambda *a: seen.append(a[:2]))
    # every batch committed exactly once (rows_done strictly increasing per section)
    for section in ("reset", "dynamics", "repeats"):
        rows = [d for s, d in seen if s == section]
        assert rows == sorted(set(rows)), section
    for name in ("dynamics_inputs", "dynamics_outputs", "dynamics_initial", "repeats_inputs",
                 "repeats_outputs", "repeats_initial", "reset_initial", "active_lo", "active_hi"):
        np.testing.assert_array_equal(getattr(done, name), getattr(ref, name), err_msg=name)
    assert done.attrs["instrument_s"] == pytest.approx(ref.attrs["instrument_s"])
    with h5py.File(path, "r") as f:
        assert len(f["checksums/dynamics/outputs"]) == 3  # 23 rows in batches of 8


def test_long_mode_sporadic_resets(served, tmp_path):
    client = served(LeakyRig(n_out=1, seed=3, readout_noise=0.0))
    ds = collect(client, tmp_path / "long.h5", **{**KW, "mode": "long", "reset_prob": 0.3})
    r = ds.resets
    assert r[0] and r[8] and r[16] and not r.all()  # a reset at each batch start, sporadic between
    cont = np.flatnonzero(~r)
    # a continuing row starts where the previous row ended
    np.testing.assert_allclose(ds.dynamics_initial[cont], ds.dynamics_outputs[cont - 1, -1])


def test_bad_settings(served, tmp_path):
    client = served(LeakyRig(n_out=1))
    with pytest.raises(ConfigError, match="repeats"):
        collect(client, tmp_path / "x.h5", **{**KW, "repeats": 3})
    with pytest.raises(ConfigError, match="mode"):
        collect(client, tmp_path / "x.h5", **{**KW, "mode": "sideways"})


def test_active_range_of_the_emulated_nra(served):
    nra = pytest.importorskip("emulator.nra")
    client = served(nra.NRARig(seed=0), name="nra")
    ar = find_active_range(client, seed=0)
    # the NRA is frozen below ~20 Oe and saturated above ~35 Oe (emulator/nra.py); the sweep's
    # 1.25 Oe grid and 5-level derivative blur the edges by a few Oe
    assert 14.0 <= ar.lo[0] <= 21.0, ar.lo
    assert 32.0 <= ar.hi[0] <= 38.0, ar.hi


_KILL_SCRIPT = """
import os, signal, sys
from bridge import RigClient, RigServer
from bridge.backends.testrigs import LeakyRig
from nado.data.collect import collect
server = RigServer({"rig": LeakyRig(n_out=2, seed=3)}, "inproc://kill").start()
client = RigClient("inproc://kill", "rig")
left = [int(sys.argv[2])]
def on_batch(section, done, total):
    left[0] -= 1
    if left[0] == 0:
        os.kill(os.getpid(), signal.SIGKILL)   # no cleanup at all, like a power cut
collect(client, sys.argv[1], sequences=23, length=6, repeats=(5, 4), resets=9, batch=8, seed=7,
        progress=False, on_batch=on_batch)
"""


@pytest.mark.slow
@pytest.mark.e2e
def test_resume_after_sigkill(served, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    path = tmp_path / "killed.h5"
    for k in (4, 3):  # killed after 4 batches (mid dynamics), then after 3 more (mid repeats)
        proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(path), str(k)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        with pytest.raises(DatasetError, match="unfinished"):
            load_dataset(path)
    client = served(LeakyRig(n_out=2, seed=3))
    done = collect(client, path, **KW)
    ref = collect(client, tmp_path / "ref.h5", **KW)
    for name in ("dynamics_outputs", "repeats_outputs", "reset_initial", "dynamics_inputs"):
        np.testing.assert_array_equal(getattr(done, name), getattr(ref, name), err_msg=name)
