"""Emulated artificial spin-vortex ice (ASVI) read by ferromagnetic resonance (FMR).

A mean-field hysteron model (no neural network inside) of the two bar
populations of an ASVI (Gartside et al., Nat. Nanotechnol. 17, 460 (2022);
Stenning et al. 2024; the NADO paper, Methods), vectorised over the B
experiments of a drive.

**Bars.** Two populations, *thin* and *wide* bars, each split into ``n_bins``
quantile bins of a Gaussian coercive-field distribution (quenched disorder of
mm-scale arrays: "a Gaussian spread of coercive fields over a few mT"): thin
``Hc ~ N(125, 11) Oe``, wide ``N(100, 11) Oe`` (fields along the bar axis; FWHM
~2.6 mT). Each population holds ``units`` effective switching units (default
4000; the finite number makes switching binomial: intrinsic noise). A thin
unit is a two-state hysteron (+/-, magnetised along or against the +45 degree
field direction's projection); a wide unit can also hold a *vortex*.

**One input step** = a field loop of amplitude s (Oe) applied at
``field_angle_deg`` = 45 degrees to both bar sets: +s then -s, so each bar axis
sees ``h = s cos 45``. In each half (sign sigma) a unit opposite to the field
reverses with probability ``Phi((h - Hc + J sigma m_other) / jitter_oe)``:
thermal jitter of the switching field (3 Oe) makes switching near Hc stochastic;
``J = coupling_oe`` is a mean-field dipolar coupling to the other population's
net magnetisation ``m_other`` (neighbours aligned with the field ease the
reversal). A reversing wide unit is caught in a vortex with probability
``vortex_p * exp(-(h - Hc)/vortex_window_oe)`` (vortices form when the field only
just exceeds the coercive field); a vortex is expelled into the field direction
with probability ``Phi((h - Hc - vortex_expel_oe) / jitter_oe)``. So a large loop
leaves a trace (switched bars, vortices) that smaller loops do not erase, and
medium loops write vortex patterns: hysteresis and history-dependent memory.

**Reset** (paper, Methods): a field applied linearly to ``saturation_oe`` =
235 Oe: every unit + (vortices expelled); then the bias field.

**Observable: FMR spectrum** at the bias field ``bias_oe`` (applied at 45 degrees,
axis component ``h_b``), ``n_channels`` = 60 bins from ``f_min_ghz`` = 3 to
``f_max_ghz`` = 9 GHz, each the mean absorption over its 10 MHz sweep points
(exactly: the bin average of a Lorentzian). Lines (Kittel relation, in-plane
magnetised bar, field along the magnetisation)::

    f = gamma * sqrt((Hk + sigma (h_b + D m_other)) (Hk + sigma (h_b + D m_other) + 4 pi Ms))

for sigma = +/-1 (parallel/antiparallel to the bias), with gamma = 2.8 GHz/kOe,
4 pi Ms = 10 kOe (permalloy), shape anisotropy ``Hk`` 500 Oe (thin) / 250 Oe
(wide), dipolar shift ``D = dipolar_oe`` = 40 Oe; the vortex mode at
``vortex_ghz`` = 7.6 GHz. Line amplitudes (uV at the peak) follow the fraction
of units in each state; half widths 0.2 / 0.25 / 0.35 GHz.

**Noise** (uV): measurement noise of std ``noise_uv`` per channel, roughly flat
across channels (a fixed per-sample profile within +-``noise_tilt``), nearly
white in time (AR(1) across steps with coefficient ``noise_lag1``; repeated
real ASVI spectra show a lag-1 autocorrelation of ~0.08), plus the intrinsic
binomial switching noise. The default ``noise_uv`` is calibrated to DESIGN.md's
median per-channel SNR of ~9.2 over the active window (~100-215 Oe).

**Calibration** (DESIGN.md, real ASVI: median per-channel SNR 9.2, 10th
percentile 1.9, 90th 38, lag-1 0.08; measured here with
:func:`nado.data.snr.measure_snr`, M=64 x R=32 x T=20, uniform 100-215 Oe):
median 9.2, 10th percentile 1.6, 90th 21, lag-1 0.08, noise within +-10 % across
channels. Intrinsic switching noise alone gives a median SNR of ~40.

**Safe input range**: 0..``saturation_oe`` (235 Oe, the reset field); the
active window (where loops switch bars) is ~100-215 Oe for the defaults.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from .base import EmulatedRig, as_float, as_int
from .errors import ConfigError
from .noise import OUBank, switch_counts
from .timing import ASVITiming, make_timing

GAMMA_GHZ_PER_OE = 2.8e-3


class ASVIRig(EmulatedRig):
    """Emulated ASVI; see the module docstring for the physics and the parameters."""

    kind = "asvi"
    backend = "physics.asvi"

    def __init__(self, name: str = "asvi", *, seed: int | None = None, sample_seed: int = 0,
                 clock: str = "virtual", speed: float = 1.0, timing: dict | None = None,
                 faults: dict | None = None,
                 n_bins: int = 32, units: int = 4000, field_angle_deg: float = 45.0,
                 thin_hc_oe: float = 125.0, thin_hc_spread_oe: float = 11.0,
                 wide_hc_oe: float = 100.0, wide_hc_spread_oe: float = 11.0,
                 jitter_oe: float = 3.0, coupling_oe: float = 6.0,
                 vortex_p: float = 0.6, vortex_window_oe: float = 6.0, vortex_expel_oe: float = 30.0,
                 saturation_oe: float = 235.0, bias_oe: float = 50.0,
                 ms_oe: float = 10000.0, thin_hk_oe: float = 500.0, wide_hk_oe: float = 250.0,
                 dipolar_oe: float = 40.0, vortex_ghz: float = 7.6,
                 thin_amp_uv: float = 1.0, wide_amp_uv: float = 1.6, vortex_amp_uv: float = 1.2,
                 thin_hwhm_ghz: float = 0.2, wide_hwhm_ghz: float = 0.25, vortex_hwhm_ghz: float = 0.35,
                 f_min_ghz: float = 3.0, f_max_ghz: float = 9.0, n_channels: int = 60,
                 noise_uv: float = 0.0097, noise_lag1: float = 0.065, noise_tilt: float = 0.1):
        super().__init__(name, seed=seed, sample_seed=sample_seed, clock=clock, speed=speed, faults=faults)
        self.timing: ASVITiming = make_timing(ASVITiming, timing)
        self.n_bins = as_int("n_bins", n_bins, lo=1, hi=4096)
        self.units = as_int("units", units, lo=self.n_bins)
        self.field_angle_deg = as_float("field_angle_deg", field_angle_deg, lo=0, hi=89.0)
        self.cos_angle = math.cos(math.radians(self.field_angle_deg))
        f = {}
        for key, value, lo in (("thin_hc_oe", thin_hc_oe, 0), ("thin_hc_spread_oe", thin_hc_spread_oe, 0),
                               ("wide_hc_oe", wide_hc_oe, 0), ("wide_hc_spread_oe", wide_hc_spread_oe, 0),
                               ("coupling_oe", coupling_oe, 0), ("vortex_expel_oe", vortex_expel_oe, 0),
                               ("bias_oe", bias_oe, 0), ("dipolar_oe", dipolar_oe, 0),
                               ("thin_amp_uv", thin_amp_uv, 0), ("wide_amp_uv", wide_amp_uv, 0),
                               ("vortex_amp_uv", vortex_amp_uv, 0), ("noise_uv", noise_uv, 0)):
            f[key] = as_float(key, value, lo=lo)
        for key, value in (("jitter_oe", jitter_oe), ("vortex_window_oe", vortex_window_oe),
                           ("saturation_oe", saturation_oe), ("ms_oe", ms_oe),
                           ("thin_hk_oe", thin_hk_oe), ("wide_hk_oe", wide_hk_oe),
                           ("vortex_ghz", vortex_ghz), ("thin_hwhm_ghz", thin_hwhm_ghz),
                           ("wide_hwhm_ghz", wide_hwhm_ghz), ("vortex_hwhm_ghz", vortex_hwhm_ghz),
                           ("f_min_ghz", f_min_ghz)):
            f[key] = as_float(key, value, lo=0, lo_open=True)
        f["vortex_p"] = as_float("vortex_p", vortex_p, lo=0, hi=1)
        f["f_max_ghz"] = as_float("f_max_ghz", f_max_ghz, lo=f["f_min_ghz"], lo_open=True)
        f["noise_lag1"] = as_float("noise_lag1", noise_lag1, lo=0, hi=0.99)
        f["noise_tilt"] = as_float("noise_tilt", noise_tilt, lo=0, hi=0.9)
        self.__dict__.update(f)
        self.n_channels = as_int("n_channels", n_channels, lo=1, hi=100000)
        if self.bias_oe * self.cos_angle >= min(self.thin_hk_oe, self.wide_hk_oe):
            raise ConfigError(f"bias_oe={self.bias_oe:g} is too strong for the bars' anisotropy; "
                              "lower it")
        self._build_sample()

    # ---- the sample ----------------------------------------------------------------------
    def _build_sample(self) -> None:
        rng = np.random.default_rng(self.sample_seed)
        q = (np.arange(self.n_bins) + 0.5) / self.n_bins
        z = np.sort(ndtri(q) + 0.02 * rng.standard_normal(self.n_bins))   # sample-specific jitter
        self.hc_thin = self.thin_hc_oe + self.thin_hc_spread_oe * z
        self.hc_wide = self.wide_hc_oe + self.wide_hc_spread_oe * z
        self.bin_units = np.array([len(g) for g in np.array_split(np.arange(self.units), self.n_bins)],
                                  dtype=np.int64)
        edges = np.linspace(self.f_min_ghz, self.f_max_ghz, self.n_channels + 1)
        self.edges_ghz = edges
        self.channel_ghz = 0.5 * (edges[1:] + edges[:-1])
        self.noise_profile = 1 + self.noise_tilt * rng.uniform(-1, 1, self.n_channels)

    # ---- dynamics -----------------------------------------------------------------------
    def _half(self, st: dict, h: np.ndarray, sign: int, rng: np.random.Generator) -> dict:
        """One half loop: axis field h (B,) >= 0 applied with ``sign`` (+1/-1)."""
        n = self.bin_units[None, :]
        tp, wp, wv = st["thin_plus"], st["wide_plus"], st["wide_vortex"]
        m_thin = (2 * tp.sum(1) - self.units) / self.units                # (B,)
        m_wide = (2 * wp.sum(1) + wv.sum(1) - self.units) / self.units    # vortices carry no moment
        hh = h[:, None]
        pi_t = ndtr((hh - self.hc_thin + self.coupling_oe * sign * m_wide[:, None]) / self.jitter_oe)
        pi_w = ndtr((hh - self.hc_wide + self.coupling_oe * sign * m_thin[:, None]) / self.jitter_oe)
        pi_v = ndtr((hh - self.hc_wide - self.vortex_expel_oe) / self.jitter_oe)
        nu = self.vortex_p * np.exp(-np.clip(hh - self.hc_wide, 0, None) / self.vortex_window_oe)
        wm = n - wp - wv                                                  # wide, minus
        expelled = switch_counts(rng, wv, pi_v)
        if sign > 0:
            tp = tp + switch_counts(rng, n - tp, pi_t)
            rev = switch_counts(rng, wm, pi_w)
            new_v = switch_counts(rng, rev, nu)
            wp = wp + rev - new_v + expelled
        else:
            tp = tp - switch_counts(rng, tp, pi_t)
            rev = switch_counts(rng, wp, pi_w)
            new_v = switch_counts(rng, rev, nu)
            wp = wp - rev
        wv = wv + new_v - expelled
        return {"thin_plus": tp, "wide_plus": wp, "wide_vortex": wv}

    def _loop(self, st: dict, s: np.ndarray, rng: np.random.Generator) -> dict:
        h = s * self.cos_angle
        return self._half(self._half(st, h, +1, rng), h, -1, rng)

    def _spectrum(self, st: dict) -> np.ndarray:
        """Noise-free FMR spectrum (B, K) in uV at the bias field."""
        U = self.units
        tp = st["thin_plus"].sum(1) / U
        wp = st["wide_plus"].sum(1) / U
        wv = st["wide_vortex"].sum(1) / U
        wm = 1 - wp - wv
        m_thin, m_wide = 2 * tp - 1, wp - wm
        hb = self.bias_oe * self.cos_angle
        lines_f, lines_a, lines_w = [], [], []
        for hk, m_other, amp, frac_p, frac_m, hw in (
                (self.thin_hk_oe, m_wide, self.thin_amp_uv, tp, 1 - tp, self.thin_hwhm_ghz),
                (self.wide_hk_oe, m_thin, self.wide_amp_uv, wp, wm, self.wide_hwhm_ghz)):
            for sigma, frac in ((1, frac_p), (-1, frac_m)):
                heff = np.clip(hk + sigma * (hb + self.dipolar_oe * m_other), 1.0, None)
                lines_f.append(GAMMA_GHZ_PER_OE * np.sqrt(heff * (heff + self.ms_oe)))
                lines_a.append(amp * frac)
                lines_w.append(np.full_like(heff, hw))
        lines_f.append(np.full_like(wv, self.vortex_ghz))
        lines_a.append(self.vortex_amp_uv * wv)
        lines_w.append(np.full_like(wv, self.vortex_hwhm_ghz))
        f0 = np.stack(lines_f, 1)[:, :, None]            # (B, L, 1)
        a = np.stack(lines_a, 1)[:, :, None]
        g = np.stack(lines_w, 1)[:, :, None]
        e = self.edges_ghz[None, None, :]
        cum = a * g * np.arctan((e - f0) / g)             # antiderivative of a g^2 / ((f-f0)^2 + g^2)
        return (cum[:, :, 1:] - cum[:, :, :-1]).sum(1) / np.diff(self.edges_ghz)[None, :]

    def _noise_bank(self, B: int, rng: np.random.Generator) -> OUBank:
        rho = self.noise_lag1
        tau = -1.0 / math.log(rho) if rho > 0 else 1e-3      # in units of steps
        return OUBank([tau], self.noise_uv, 1.0, (B, self.n_channels), seed=rng)

    def _reset_state(self, B: int, rng: np.random.Generator):
        zeros = np.zeros((B, self.n_bins), dtype=np.int64)
        st = {"thin_plus": zeros, "wide_plus": zeros, "wide_vortex": zeros}
        st = self._half(st, np.full(B, self.saturation_oe * self.cos_angle), +1, rng)
        bank = self._noise_bank(B, rng)
        initial = self._spectrum(st) + bank.sample(1)[..., 0] * self.noise_profile
        st.update(noise=bank.state, obs=initial)
        return st, initial

    def _run(self, state: dict, x: np.ndarray, rng: np.random.Generator):
        B, T, _ = x.shape
        st = {k: state[k] for k in ("thin_plus", "wide_plus", "wide_vortex")}
        out = np.empty((B, T, self.n_channels))
        for t in range(T):
            self._check_stop()
            st = self._loop(st, x[:, t, 0], rng)
            out[:, t] = self._spectrum(st)
        bank = self._noise_bank(B, rng)
        bank.state = state["noise"].copy()
        out += np.moveaxis(bank.sample(T), -1, 1) * self.noise_profile
        st.update(noise=bank.state, obs=out[:, -1].copy())
        return st, out

    # ---- description and timing -----------------------------------------------------------
    def _describe_extra(self) -> dict[str, Any]:
        t = self.timing
        return {"input": {"dims": [1], "units": "Oe", "min": 0.0, "max": self.saturation_oe},
                "output": {"dims": [self.n_channels], "units": "uV",
                           "frequencies_ghz": self.channel_ghz.round(6).tolist()},
                "step_s": float(t.loop_s(np.array(0.5 * self.saturation_oe), self.bias_oe)
                                + t.sweep_s(self.f_min_ghz, self.f_max_ghz)),
                "step_s_note": "typical (loop of half the safe range); a step's time depends on s",
                "observable": "FMR absorption spectrum at the bias field, lock-in, per frequency bin",
                "reset": {"field_oe": self.saturation_oe, "bias_oe": self.bias_oe,
                          "seconds": t.reset_s(self.saturation_oe, self.bias_oe)
                          + t.sweep_s(self.f_min_ghz, self.f_max_ghz)}}

    def _instrument_phases(self, x: np.ndarray, reset: bool):
        t = self.timing
        sweep = t.sweep_s(self.f_min_ghz, self.f_max_ghz)
        loops = t.loop_s(x[:, :, 0], self.bias_oe).sum(axis=1)                      # (B,)
        T = x.shape[1]
        head = [("reset ramp", t.reset_s(self.saturation_oe, self.bias_oe)),
                ("FMR sweep", sweep)] if reset else []
        return t.request_overhead_s, [head + [("field loops", float(lp)), ("FMR sweeps", T * sweep)]
                                      for lp in loops]
