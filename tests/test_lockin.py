"""The digital lock-in on synthesised carriers modulated by the emulated NRA's AMR signal.

Tolerances: the per-step (rotation-mean) resistance is recovered within
``0.03 * |largest step-to-step jump| + 0.01 ohm`` (the 320 Hz low-pass smears
each step change over ~1 ms of a 15.6 ms rotation, ~2 % of the jump; the white
noise added, 1 mV rms at 2 MHz, is ~0.005 ohm rms on a rotation mean); results
at different carrier phases agree within 1e-3 ohm (4 ppm) without noise. The first and
last rotation of a record carry the filter's edge transient (~4 ms); the rig
pads every record with a lead-in and a ramp-down rotation, so tests skip them.
"""
import numpy as np
import pytest

from bridge.backends.daq import lockin as L
from emulator.nra import NRARig

SPR_AI = 31_250  # 2 MHz / 64 Hz


def amr_steps(n_out: int = 1, T: int = 24, seed: int = 3, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Per-step AMR (ohm) of the emulated NRA for random inputs over its active range: (T, n_out)."""
    rig = NRARig(seed=seed, n_out=n_out, **kw)
    s = np.random.default_rng(seed).uniform(15.0, 45.0, (1, T, 1))
    return s[0, :, 0], rig.drive(s, seed=seed).outputs[0]


def trace_from_steps(steps: np.ndarray) -> np.ndarray:
    """A resistance trace at 2 MHz whose rotation means are ``steps`` (T,), with 128 Hz AMR ripple."""
    t = np.arange(steps.shape[0] * SPR_AI) / L.SAMPLE_RATE_HZ
    return np.repeat(steps, SPR_AI) + 0.4 * np.cos(2 * 2 * np.pi * L.ROTATION_HZ * t + 0.3)


def test_rotation_mean_recovered_from_emulated_amr_with_noise():
    _, obs = amr_steps()
    steps = obs[:, 0]
    assert steps.std() > 0.1  # the emulator gives a real signal to recover
    rng = np.random.default_rng(0)
    r = trace_from_steps(steps)
    v = L.carrier_signal(r, phase_rad=1.3) + rng.normal(0.0, 1e-3, r.shape[0])
    got = L.lockin_steps(v)
    assert got.shape == (steps.shape[0], 1)
    err = np.abs(got[1:-1, 0] - steps[1:-1])  # first/last rotation: filter edges (the rig pads them)
    tol = 0.03 * np.abs(np.diff(steps)).max() + 0.01
    assert err.max() < tol, (err.max(), tol)
    # the error is smearing between neighbours, not noise or bias: it is small where steps are flat
    assert abs(np.mean(got[1:-1, 0] - steps[1:-1])) < 0.01 * steps.std()


@pytest.mark.parametrize("phase", [0.0, 1.1, 2.9, -2.0])
def test_phase_does_not_matter(phase):
    _, obs = amr_steps(T=8)
    r = trace_from_steps(obs[:, 0])
    ref = L.lockin_steps(L.carrier_signal(r, phase_rad=0.5))
    got = L.lockin_steps(L.carrier_signal(r, phase_rad=phase))
    assert np.max(np.abs(got[1:-1] - ref[1:-1])) < 1e-3  # 4 ppm of 250 ohm


def test_generator_frequency_offset_is_tolerated():
    _, obs = amr_steps(T=8)
    steps = obs[:, 0]
    r = trace_from_steps(steps)
    v = L.carrier_signal(r, carrier_hz=L.CARRIER_HZ + 3.0)  # generator 3 Hz off the reference
    got = L.lockin_steps(v)[:, 0]
    assert np.max(np.abs(got[1:-1] - steps[1:-1])) < 0.03 * np.abs(np.diff(steps)).max() + 0.01


def test_fifty_samples_per_rotation_match_emulated_samples():
    # without readout noise: the emulator's AR(1) noise has content above 320 Hz that no
    # 320 Hz lock-in can return; the AMR pattern itself lies (mostly) below the cut-off
    _, obs = amr_steps(n_out=50, T=6, readout_noise_ohm=0.0)
    assert obs.shape == (6, 50)
    # resistance trace: the emulator's 50 lock-in samples per rotation, interpolated to 2 MHz
    t_lock = (np.arange(obs.size) + 0.5) / L.OUTPUT_RATE_HZ
    t = np.arange(obs.shape[0] * SPR_AI) / L.SAMPLE_RATE_HZ
    r = np.interp(t, t_lock, obs.reshape(-1))
    got = L.lockin_steps(L.carrier_signal(r, phase_rad=2.0), observable="samples")
    assert got.shape == (6, 50)
    inner = slice(1, -1)
    err = np.abs(got[inner] - obs[inner])
    assert np.median(err) < 0.02 * obs.std()  # larger only at the half-rotation switching edges
    assert np.corrcoef(got[inner].ravel(), obs[inner].ravel())[0, 1] > 0.99
    assert np.allclose(got[inner].mean(axis=1), obs[inner].mean(axis=1), atol=0.01)


def test_demodulate_returns_carrier_amplitude_and_rates():
    v = 0.37 * np.sin(2 * np.pi * L.CARRIER_HZ * np.arange(SPR_AI * 2) / L.SAMPLE_RATE_HZ + 0.2)
    mag = L.demodulate(v)
    assert mag.shape == (100,)
    assert np.allclose(mag[15:-15], 0.37, atol=1e-4)  # edges: ~4 ms filter transient
    assert np.allclose(mag, 0.37, atol=3e-3)
    assert L.rotations(mag).shape == (2, 50)
    assert np.allclose(L.step_observable(L.rotations(mag)[:, 15:35], current_a=2e-3), 185.0, atol=0.05)


def test_bad_rates_and_modes_are_refused():
    with pytest.raises(ValueError, match="whole multiple"):
        L.demodulate(np.zeros(10_000), output_rate_hz=3_000.0 * 1.1)
    with pytest.raises(ValueError, match="cut-off"):
        L.lowpass_sos(2e6, 2e6)
    with pytest.raises(ValueError, match="observable"):
        L.step_observable(np.ones((2, 50)), observable="median")
    with pytest.raises(ValueError, match="1-D"):
        L.demodulate(np.zeros((2, 5000)))
