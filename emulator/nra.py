"""Emulated nanomagnetic ring array (NRA) read by anisotropic magnetoresistance (AMR).

A stochastic mean-field population model of domain-wall (DW) depinning at the
junctions of an array of interconnected permalloy rings under a rotating field
(Dawidek et al., Adv. Funct. Mater. 31, 2008389 (2021); Vidamour et al.,
Nanotechnology 33, 485203 (2022), and their RingSim model). No neural network
inside. Vectorised over the B experiments of a drive; one Python iteration per
input step.

**Units.** The array's ``rows x cols`` rings (default 25 x 25 = 625) switch in
correlated avalanches of ``avalanche_rings`` rings (default 8), so the model
tracks ``U = 625 // 8 = 78`` switching units. A unit is an *onion* (two DWs
pinned at junctions) or a *vortex* (no DWs); an onion's DWs sit at the junctions
*along* the current (AMR weight ``cos^2(junction_angle)`` = 1) or *across* it
(weight ``sin^2`` = 0): the DW position in the ring is state (RingSim tracks DW
positions junction by junction). Units fall into ``n_classes`` (16) quenched
classes by their junctions' depinning field, ``H0 ~ N(h0_oe = 55, h0_spread_oe
= 3 Oe)`` (drawn once per sample from ``sample_seed``). State per experiment:
onion counts ``(2, n_classes)`` (along / across); vortices are the rest.

*Avalanche sizes* (option, off by default). Equal avalanches make the switching
noise a sum of 78 small binomial events: the repeats of a sequence form one
Gaussian cloud (0.2 % of (sequence, step) bimodal by Sarle's coefficient,
:mod:`nado.data.snr`), while the paper's Fig. 2b/2d show repeats that split into
branches (noise-induced bifurcations). Domain-wall depinning in a connected
array propagates as avalanches whose sizes follow a power law near the depinning
threshold (Barkhausen-type avalanches; mean-field depinning gives
``P(s) ~ s^-3/2``: D. S. Fisher, Phys. Rep. 301, 113 (1998)), so a few large
avalanches carry a large share of the signal, and whether such an avalanche
switches in a given rotation is a two-valued outcome that persists. With
``avalanche_exponent`` > 1 the array is cut (once per sample, from
``sample_seed``) into units of quenched sizes ``s`` in 1..``avalanche_max_rings``
rings with ``P(s) ~ s^-avalanche_exponent``; each unit gets a depinning class at
random; a unit switches as one (its trigger junction's probability ``p``, as
before) and counts in the onion fraction, the moved fraction and the AMR weight
by its rings. Units of one depinning class are grouped into
``avalanche_bins`` (4) log-spaced size bins that count with their members' mean
size. **Assumed values** (``scripts/stations/nra_avalanches.toml``): exponent
1.5 (mean field), cutoff 100 rings (16 % of the array), readout and drift noise
halved (0.029 / 0.022 ohm) so that the per-step SNR stays in the calibration
band: measured (``scripts/nra_snr.py``, M=64 x R=32 x T=20, 15..34 Oe) SNR 1.61 /
1.97 / 1.63 and bimodal repeats 13.8 / 8.3 / 16.9 % for sample seeds 0 / 1 / 2
(equal avalanches at the same noise: SNR 2.89, 0.2 %). At the default readout
and drift noise the variant's SNR is 1.54 with 5.5 % bimodal; with a cutoff of
156 rings it leaves the band (SNR 1.33-1.67, bimodal 7-23 %): large
avalanches trade SNR for branches, so the cutoff is the largest that keeps all
three sample seeds in the band.

**Depinning (thermal activation, per input step = one rotation).** A DW pinned
at a junction sees the field component ``H_eff = field_gain * H * |sin(theta)|``
as the field of amplitude H (the input, Oe) rotates through the angle theta
relative to the DW (RingSim: ``sin(lag) * Hin``). Over one rotation, split into
``ticks_per_rotation`` = 64 ticks of ``dt = step_s / 64``::

    tau(H_eff) = tau0 * exp(dE / kT),  dE = E0 * max(0, 1 - H_eff / h0)^alpha
    p_th(H; h0) = 1 - exp(-sum_ticks dt / tau(H_eff))

with tau0 = 1e-10 s, E0 = 2.6e-19 J (64 kT at T = 293 K), alpha = 1.5
(Dawidek 2021; RingSim defaults). Junctions holding two DWs depin at a lower
barrier: E0 and h0 scaled by ``double_dw_factor`` = 0.81 (RingSim ``PCE``/``PCH``).

*Annealed depinning disorder* (new in the 2026-11 revision). Each depinning
attempt sees its own h0: the DW's internal structure (transverse or vortex wall,
its chirality) is re-formed at random every time the wall propagates, and each
structure depins at a different field, so repeated depinning of the *same*
junction is stochastic over several Oe (Hayward et al., Phys. Rev. B 81,
020410(R) (2010); Akerman et al., Phys. Rev. B 82, 064426 (2010): Sheffield
permalloy nanowires, the NRA's group). Modelled as
``h0 = H0_class + depin_spread_oe * z``, z a standard normal truncated at
+-``depin_cutoff`` (3), averaged by a ``depin_quadrature``-point (25) rule::

    p_class(H) = E_z[ p_th(H; H0_class + depin_spread_oe z) ]

**Assumed values**: ``h0_spread_oe`` = 3 Oe (quenched, 5.5 % of H0: typical
switching-field distributions of e-beam permalloy elements are 5-10 %) and
``depin_spread_oe`` = 3 Oe (annealed). These are the broadest values (tried
3..5 Oe each) that keep the array frozen below ~15 Oe and the active range the
data engineer's sweep finds at ~15..34 Oe (the documented 20..35 Oe window; with
5 Oe it starts at ~13 Oe). In mean field a unit's DW sits at a double-DW
junction with probability equal to the onion fraction f (its neighbour is also
an onion aligned by the same field), so ``p = f p2(H) + (1 - f) p1(H)`` (a
positive feedback: the source of history-dependent spread and bifurcations).
With field_gain = 1 the per-rotation depinning probability (mean over classes)
rises from 0.01 to 0.99 over 18.2-27.6 Oe at double-DW junctions and 25.8-38.1
Oe at single-DW ones (pre-revision: 19.7-25.0 and 28.4-34.3 Oe).

**Per step, per class and position** (binomial draws: the intrinsic noise):
each onion's two DWs depin independently with p: both (p^2) -> the onion
rotates with the field; exactly one (2p(1-p)) -> the moving DW meets the pinned
one and they annihilate: onion -> vortex; none -> stays pinned where it was
(along or across: memory of the DW position). A rotating onion completes the
turn, ending aligned with the field, which is along the current at the step
boundary (assumption: every rotation starts at field angle 0), with probability
``p^turn_junctions`` (it must depin again at each of the ``turn_junctions`` = 3
further junctions of the turn; p stands in for the per-junction probability,
an assumption); otherwise it drops out at a random junction: across with
probability 1/2. Vortex units nucleate back to onions (along or across, 1/2
each) when DWs of neighbouring units sweep through their junctions
(frustration): ``P_nuc = 1 - exp(-2 z k(H) m)`` with z the mean number of
neighbours (3.84 for 25 x 25), m the fraction of units whose DWs moved this step
and a field-assisted efficiency ``k(H) = nucleation * Phi((H - nucleation_oe) /
nucleation_spread_oe)`` (nucleating a DW pair at a frustrated junction needs
field; 28 +- 4 Oe is this model's assumption); plus a field-driven vortex ->
onion transition ``Phi((H - vortex_onion_oe) / vortex_onion_spread_oe)``.

**Observable (AMR).** Resistance ``R = r0_ohm - amr_ohm * W``, W the DW weight
per unit: a pinned onion weighs 1 (along) or 0 (across), a rotating one
``cos^2(theta)`` (rotation mean 1/2), an annihilating one its pinned weight then
0 (mean (w + 1/2)/4), a nucleating one 1/4; vortices weigh 0. Default output:
the lock-in output averaged over the rotation (n_out = 1, ohm); ``n_out = 50``:
the 50 lock-in samples of the rotation (3.2 kHz).

**Noise** (all configurable, ohm): intrinsic binomial switching (above); white
lock-in readout noise ``readout_noise_ohm`` (std of the rotation mean; in the
50-sample mode an AR(1) sequence at 3.2 kHz with the 320 Hz low-pass's
correlation, scaled to the same rotation-mean std); coloured drift ``drift_ohm``,
a 1/f-like OU bank with time constants from ``drift_tau_min_s`` to
``drift_tau_max_s`` (two per decade), evolving in instrument time; reset noise.

**Reset** (paper, Methods: "initialized via a single rotation of magnetic field
at 80 Oe"; "a strong pulse of magnetic field, saturating the devices. A single
input corresponding to the maximum allowed input value is then applied"):
``reset_rotations`` rotation(s) at ``reset_field_oe`` = 80 Oe (every unit an
onion rotating with the field), then one step at ``reset_settle_oe`` = 35 Oe.
We read "the maximum allowed input value" as the top of the active range the
inputs are drawn from (~35 Oe here), not the 80 Oe instrument limit (a second
saturating rotation would add nothing); this is an interpretation, so it is a
parameter. When the field stops, each unit relaxes to a vortex with probability
``reset_vortex_p`` (binomial): the initial observable varies.

**Calibration** (DESIGN.md: per-step SNR between 1.5 and 3 over the active
range; measured with :func:`nado.data.snr.measure_snr`, M=64 x R=32 x T=20,
uniform 20-35 Oe, after the physics above was fixed; only the noise levels were
set, to the band): SNR = 2.37 (2.37-2.38 for other seeds/samples); signal std
0.27 ohm, noise rms 0.114 ohm. Shares of the noise variance: readout 26 %,
drift 15 %, reset 3 %, intrinsic switching ~55 % (intrinsic alone: SNR 3.6).
Lag-1 autocorrelation of the repeat residuals 0.61 (the state and the drift
persist across steps). Pre-revision model (h0_spread 1 Oe, no annealed spread,
no DW position, 5 classes, readout 0.08, drift 0.06): SNR 2.25, lag-1 0.54.

**Parameters** (keyword, all from the station table): ``seed``, ``sample_seed``,
``clock`` ("virtual"|"realtime"), ``speed``, ``timing`` (table of
:class:`emulator.timing.NRATiming` fields), ``faults``, ``rows``, ``cols``,
``avalanche_rings`` (8), ``avalanche_exponent`` (0 = equal avalanches),
``avalanche_max_rings`` (100), ``avalanche_bins`` (4), ``n_classes`` (16), ``tau0_s``, ``e0_j``,
``temperature_k``, ``h0_oe`` (55), ``h0_spread_oe`` (3), ``depin_spread_oe`` (3;
0 = no annealed disorder), ``depin_cutoff`` (3), ``depin_quadrature`` (25),
``turn_junctions`` (3; 0 = a rotating onion always completes the turn, as
before), ``alpha``, ``double_dw_factor``, ``field_gain``,
``ticks_per_rotation``, ``nucleation`` (0.35), ``nucleation_oe``,
``nucleation_spread_oe``, ``vortex_onion_oe`` (45), ``vortex_onion_spread_oe``
(4), ``r0_ohm`` (250), ``amr_ohm`` (2), ``junction_angle_deg`` (0),
``readout_noise_ohm`` (0.058), ``drift_ohm`` (0.044), ``drift_tau_min_s`` (0.1),
``drift_tau_max_s`` (1000), ``reset_field_oe`` (80), ``reset_settle_oe`` (35),
``reset_vortex_p`` (0.1), ``n_out`` (1 or 50), ``input_max_oe`` (80). The
pre-revision device: ``n_classes=5, h0_spread_oe=1, depin_spread_oe=0,
turn_junctions=0, reset_settle_oe=80, readout_noise_ohm=0.08, drift_ohm=0.06``
(close to, not bit-identical with, the old model: nucleated onions still land
across half the time).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr

from .base import EmulatedRig, as_float, as_int
from .errors import ConfigError
from .noise import OUBank, pink_taus
from .timing import NRATiming, make_timing

K_B = 1.380649e-23  # J/K


class NRARig(EmulatedRig):
    """Emulated NRA; see the module docstring for the physics and the parameters."""

    kind = "nra"
    backend = "physics.nra"

    def __init__(self, name: str = "nra", *, seed: int | None = None, sample_seed: int = 0,
                 clock: str = "virtual", speed: float = 1.0, timing: dict | None = None,
                 faults: dict | None = None,
                 rows: int = 25, cols: int = 25, avalanche_rings: int = 8, n_classes: int = 16,
                 avalanche_exponent: float = 0.0, avalanche_max_rings: int = 100,
                 avalanche_bins: int = 4,
                 tau0_s: float = 1e-10, e0_j: float = 2.6e-19, temperature_k: float = 293.0,
                 h0_oe: float = 55.0, h0_spread_oe: float = 3.0, depin_spread_oe: float = 3.0,
                 depin_quadrature: int = 25, depin_cutoff: float = 3.0,
                 turn_junctions: float = 3.0, alpha: float = 1.5,
                 double_dw_factor: float = 0.81, field_gain: float = 1.0,
                 ticks_per_rotation: int = 64, nucleation: float = 0.35,
                 nucleation_oe: float = 28.0, nucleation_spread_oe: float = 4.0,
                 vortex_onion_oe: float = 45.0, vortex_onion_spread_oe: float = 4.0,
                 r0_ohm: float = 250.0, amr_ohm: float = 2.0, junction_angle_deg: float = 0.0,
                 readout_noise_ohm: float = 0.058, drift_ohm: float = 0.044,
                 drift_tau_min_s: float = 0.1, drift_tau_max_s: float = 1000.0,
                 reset_field_oe: float = 80.0, reset_settle_oe: float = 35.0,
                 reset_vortex_p: float = 0.1, n_out: int = 1, input_max_oe: float = 80.0):
        super().__init__(name, seed=seed, sample_seed=sample_seed, clock=clock, speed=speed, faults=faults)
        self.timing: NRATiming = make_timing(NRATiming, timing)
        self.rows, self.cols = as_int("rows", rows, lo=2, hi=1000), as_int("cols", cols, lo=2, hi=1000)
        n_rings = self.rows * self.cols
        self.avalanche_rings = as_int("avalanche_rings", avalanche_rings, lo=1, hi=n_rings)
        self.avalanche_exponent = as_float("avalanche_exponent", avalanche_exponent, lo=0)
        if 0 < self.avalanche_exponent <= 1:
            raise ConfigError(f"avalanche_exponent must be 0 (equal avalanches of avalanche_rings) or > 1 "
                              f"(a normalisable power law; mean-field depinning: 1.5), got {avalanche_exponent}")
        self.avalanche_max_rings = as_int("avalanche_max_rings", avalanche_max_rings, lo=1, hi=n_rings)
        self.avalanche_bins = as_int("avalanche_bins", avalanche_bins, lo=1, hi=16)
        self.n_units = n_rings // self.avalanche_rings      # power-law sizes: set by _build_sample
        self.n_classes = as_int("n_classes", n_classes, lo=1, hi=max(1, self.n_units))
        self.tau0_s = as_float("tau0_s", tau0_s, lo=0, lo_open=True)
        self.e0_j = as_float("e0_j", e0_j, lo=0, lo_open=True)
        self.temperature_k = as_float("temperature_k", temperature_k, lo=0, lo_open=True)
        self.h0_oe = as_float("h0_oe", h0_oe, lo=0, lo_open=True)
        self.h0_spread_oe = as_float("h0_spread_oe", h0_spread_oe, lo=0)
        self.depin_spread_oe = as_float("depin_spread_oe", depin_spread_oe, lo=0)
        self.turn_junctions = as_float("turn_junctions", turn_junctions, lo=0)
        self.depin_cutoff = as_float("depin_cutoff", depin_cutoff, lo=0)
        self.depin_quadrature = as_int("depin_quadrature", depin_quadrature, lo=1, hi=64)
        self.alpha = as_float("alpha", alpha, lo=0, lo_open=True)
        self.double_dw_factor = as_float("double_dw_factor", double_dw_factor, lo=0, hi=1, lo_open=True)
        self.field_gain = as_float("field_gain", field_gain, lo=0, lo_open=True)
        self.ticks = as_int("ticks_per_rotation", ticks_per_rotation, lo=4, hi=4096)
        self.nucleation = as_float("nucleation", nucleation, lo=0)
        self.nucleation_oe = as_float("nucleation_oe", nucleation_oe, lo=0)
        self.nucleation_spread_oe = as_float("nucleation_spread_oe", nucleation_spread_oe,
                                             lo=0, lo_open=True)
        self.vortex_onion_oe = as_float("vortex_onion_oe", vortex_onion_oe, lo=0)
        self.vortex_onion_spread_oe = as_float("vortex_onion_spread_oe", vortex_onion_spread_oe,
                                               lo=0, lo_open=True)
        self.r0_ohm = as_float("r0_ohm", r0_ohm)
        self.amr_ohm = as_float("amr_ohm", amr_ohm)
        self.junction_angle_deg = as_float("junction_angle_deg", junction_angle_deg)
        self.readout_noise_ohm = as_float("readout_noise_ohm", readout_noise_ohm, lo=0)
        self.drift_ohm = as_float("drift_ohm", drift_ohm, lo=0)
        self.drift_tau_min_s = as_float("drift_tau_min_s", drift_tau_min_s, lo=0, lo_open=True)
        self.drift_tau_max_s = as_float("drift_tau_max_s", drift_tau_max_s, lo=self.drift_tau_min_s)
        self.input_max_oe = as_float("input_max_oe", input_max_oe, lo=0, lo_open=True)
        self.reset_field_oe = as_float("reset_field_oe", reset_field_oe, lo=0)
        self.reset_settle_oe = as_float("reset_settle_oe", reset_settle_oe, lo=0)
        self.reset_vortex_p = as_float("reset_vortex_p", reset_vortex_p, lo=0, hi=1)
        self.n_out = as_int("n_out", n_out, lo=1)
        if self.n_out not in (1, self.timing.samples_per_step):
            raise ConfigError(f"n_out must be 1 (rotation mean) or {self.timing.samples_per_step} "
                              f"(lock-in samples per rotation), got {self.n_out}")
        self._build_sample()

    # ---- the sample: quenched disorder and depinning tables ----------------------------
    def _build_sample(self) -> None:
        rng = np.random.default_rng(self.sample_seed)
        n_junctions = 2 * self.rows * (self.cols - 1) if self.rows == self.cols else \
            self.rows * (self.cols - 1) + self.cols * (self.rows - 1)
        self.coordination = 2.0 * n_junctions / (self.rows * self.cols)
        h0 = np.sort(self.h0_oe + self.h0_spread_oe * rng.standard_normal(n_junctions))
        self.class_h0_oe = np.array([g.mean() for g in np.array_split(h0, self.n_classes)])
        self.class_units = np.array([len(g) for g in np.array_split(np.arange(self.n_units),
                                                                    self.n_classes)], dtype=np.int64)
        self.class_rings = np.full(self.n_classes, float(self.avalanche_rings))
        if self.avalanche_exponent > 0:
            self._power_law_units(rng)
        self.total_rings = float((self.class_units * self.class_rings).sum())
        self.grid_step_oe = 0.02
        h_top = max(self.input_max_oe, self.reset_field_oe, self.reset_settle_oe)
        self.grid_oe = np.arange(0.0, h_top + 2 * self.grid_step_oe, self.grid_step_oe)
        # thermal switching probability over one rotation as a function of x = H / H0 alone
        theta = 2 * np.pi * (np.arange(self.ticks) + 0.5) / self.ticks
        dt_tick = self.timing.step_s / self.ticks
        kT = K_B * self.temperature_k
        x_grid = np.linspace(0.0, 1.05, 4201)
        xe = x_grid[:, None] * np.abs(np.sin(theta))[None, :]                # (X, ticks)
        # annealed (per-event) depinning field: Gauss-Hermite quadrature over N(H0_c, depin_spread)
        # (Gaussian truncated at +-depin_cutoff standard deviations: no DW depins at zero field)
        nodes = np.linspace(-self.depin_cutoff, self.depin_cutoff, self.depin_quadrature)
        weights = np.exp(-0.5 * nodes ** 2)
        weights = weights / weights.sum()
        tables = []
        for factor in (1.0, self.double_dw_factor):                 # single, double DW junctions
            barrier = factor * self.e0_j * np.clip(1 - xe, 0, None) ** self.alpha
            p_x = -np.expm1(-dt_tick * (np.exp(-barrier / kT) / self.tau0_s).sum(axis=1))   # (X,)
            h0_events = factor * (self.class_h0_oe[None, :, None] + self.depin_spread_oe
                                  * nodes[None, None, :])            # (1, C, Q) Oe
            h0_events = np.maximum(h0_events, 1e-3)
            ratio = self.field_gain * self.grid_oe[:, None, None] / h0_events      # (G, C, Q)
            p = np.interp(ratio, x_grid, p_x, right=1.0)
            tables.append(p @ weights)                                # (G, C)
        self._p_single, self._p_double = tables
        self._k_nuc = self.nucleation * ndtr((self.grid_oe - self.nucleation_oe)
                                             / self.nucleation_spread_oe)
        self._p_vortex_onion = ndtr((self.grid_oe - self.vortex_onion_oe) / self.vortex_onion_spread_oe)
        self.pin_weight = math.cos(math.radians(self.junction_angle_deg)) ** 2

    def _power_law_units(self, rng: np.random.Generator) -> None:
        """Quenched avalanche units of power-law sizes (see the module docstring).

        Sizes s in 1..avalanche_max_rings rings with P(s) ~ s^-avalanche_exponent are drawn until
        they cover the array (the last one trimmed to fit); each unit gets a depinning class at
        random; units are grouped by (depinning class, size bin), ``avalanche_bins`` log-spaced
        bins, and a group's units count with the mean size of its members."""
        n_rings = self.rows * self.cols
        s = np.arange(1, self.avalanche_max_rings + 1, dtype=np.float64)
        prob = s ** -self.avalanche_exponent
        sizes, total = [], 0
        while total < n_rings:
            k = int(rng.choice(s, p=prob / prob.sum()))
            k = min(k, n_rings - total)
            sizes.append(k)
            total += k
        sizes = np.array(sizes, dtype=np.float64)
        h0_class = rng.integers(0, self.n_classes, size=sizes.size)
        edges = np.geomspace(1.0, self.avalanche_max_rings + 1.0, self.avalanche_bins + 1)
        size_bin = np.clip(np.searchsorted(edges, sizes, side="right") - 1, 0, self.avalanche_bins - 1)
        h0s, units, rings = [], [], []
        for c in range(self.n_classes):
            for b in range(self.avalanche_bins):
                members = sizes[(h0_class == c) & (size_bin == b)]
                if members.size:
                    h0s.append(self.class_h0_oe[c])
                    units.append(members.size)
                    rings.append(members.mean())
        self.class_h0_oe = np.array(h0s)
        self.class_units = np.array(units, dtype=np.int64)
        self.class_rings = np.array(rings)
        self.n_units = int(sizes.size)
        self.n_classes = len(units)

    def _rings(self, counts: np.ndarray) -> np.ndarray:
        """Rings in the units ``counts`` (..., C) per class -> (...); over ``total_rings``: a share
        (with equal units, exactly the unit count over ``n_units``, bit for bit)."""
        return (counts * self.class_rings).sum(axis=-1)

    def _lookup(self, table: np.ndarray, h: np.ndarray) -> np.ndarray:
        x = np.clip(h / self.grid_step_oe, 0, len(self.grid_oe) - 1.000001)
        i = x.astype(np.int64)
        w = x - i
        if table.ndim == 2:
            w = w[:, None]
        return table[i] * (1 - w) + table[i + 1] * w

    # ---- dynamics -----------------------------------------------------------------------
    def _step(self, onion: np.ndarray, h: np.ndarray, rng: np.random.Generator):
        """One rotation at amplitudes h (B,) Oe.

        onion (B, 2, C) counts of onion units pinned along [:, 0] / across [:, 1] the
        current, per class. Returns (onion', counts (B, 7) unit fractions: pinned along,
        pinned across, rotating, annihilated from along, from across, nucleated, and
        rotating units that re-pinned across at the end of the rotation).
        """
        f = self._rings(onion.sum(axis=1))[:, None] / self.total_rings
        p = f * self._lookup(self._p_double, h) + (1 - f) * self._lookup(self._p_single, h)
        p = np.clip(p, 0.0, 1.0)[:, None, :]                                   # (B, 1, C)
        n_ann = rng.binomial(onion, np.clip(2 * p * (1 - p), 0.0, 1.0))
        rest = onion - n_ann
        p2 = p * p
        n_rot = rng.binomial(rest, p2 / np.maximum(p2 + (1 - p) ** 2, 1e-300))
        n_pin = rest - n_rot
        rot = n_rot.sum(axis=1)                                                # (B, C)
        # a rotating onion completes the turn (ends along the field, i.e. along the current at
        # the step boundary) if it depins at each further junction; else it drops out at a
        # random junction: along or across with equal odds
        complete = p[:, 0, :] ** self.turn_junctions
        n_across = rng.binomial(rot, np.clip(0.5 * (1 - complete), 0.0, 1.0))
        moved = (self._rings(rot) + 0.5 * self._rings(n_ann.sum(axis=1))) / self.total_rings
        p_nuc = -np.expm1(-2 * self.coordination * self._lookup(self._k_nuc, h) * moved)
        p_vo = self._lookup(self._p_vortex_onion, h)
        p_tot = 1 - (1 - p_nuc) * (1 - p_vo)
        n_nuc = rng.binomial(self.class_units[None, :] - onion.sum(axis=1), p_tot[:, None])
        nuc_across = rng.binomial(n_nuc, 0.5)
        new = np.empty_like(onion)
        new[:, 0] = n_pin[:, 0] + rot - n_across + n_nuc - nuc_across
        new[:, 1] = n_pin[:, 1] + n_across + nuc_across
        counts = np.stack([self._rings(n) for n in (n_pin[:, 0], n_pin[:, 1], rot, n_ann[:, 0], n_ann[:, 1],
                                                    n_nuc, n_across)], axis=1) / self.total_rings
        return new, counts

    def _weights(self, counts: np.ndarray) -> np.ndarray:
        """DW weight W (B, n_out) of one rotation from the unit fractions of :meth:`_step`."""
        pin_a, pin_x, rot, ann_a, ann_x, nuc, _ = (counts[:, i:i + 1] for i in range(7))
        a, x = self.pin_weight, 1.0 - self.pin_weight
        if self.n_out == 1:
            return pin_a * a + pin_x * x + rot * 0.5 + (ann_a * (a + 0.5) + ann_x * (x + 0.5)) / 4 \
                + nuc * 0.25
        n = self.n_out
        theta = 2 * np.pi * (np.arange(n) + 0.5) / n
        c2 = np.cos(theta) ** 2
        first = (np.arange(n) < n // 2).astype(np.float64)
        return pin_a * a + pin_x * x + rot * c2 + (ann_a * (a + c2) + ann_x * (x + c2)) * first / 2 \
            + nuc * (1 - first) * c2

    def _readout(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Lock-in noise (B, T, n_out) whose rotation mean has std readout_noise_ohm."""
        if self.n_out == 1:
            return self.readout_noise_ohm * rng.standard_normal(shape)
        n = self.n_out
        rho = math.exp(-2 * math.pi * self.timing.lockin_cutoff_hz / self.timing.lockin_hz)
        k = np.arange(1, n)
        var_mean_per_var = (1 + 2 * np.sum((1 - k / n) * rho ** k)) / n
        sigma = self.readout_noise_ohm / math.sqrt(var_mean_per_var)
        flat = rng.standard_normal((shape[0], shape[1] * n)) * sigma * math.sqrt(1 - rho * rho)
        zi = (sigma * rng.standard_normal((shape[0], 1))) * rho
        out, _ = lfilter([1.0], [1.0, -rho], flat, axis=-1, zi=zi)
        return out.reshape(shape)

    def _drift_bank(self, B: int, rng: np.random.Generator) -> OUBank:
        taus = pink_taus(self.drift_tau_min_s, self.drift_tau_max_s, 2.0)
        return OUBank(taus, self.drift_ohm / math.sqrt(taus.size), self.timing.step_s, (B,), seed=rng)

    def _resistance(self, w: np.ndarray) -> np.ndarray:
        return self.r0_ohm - self.amr_ohm * w

    def _reset_state(self, B: int, rng: np.random.Generator):
        onion = np.zeros((B, 2, self.n_classes), dtype=np.int64)
        onion[:, 0] = self.class_units[None, :]
        for _ in range(self.timing.reset_rotations):
            onion, _ = self._step(onion, np.full(B, self.reset_field_oe), rng)
        onion, _ = self._step(onion, np.full(B, self.reset_settle_oe), rng)
        onion = onion - rng.binomial(onion, self.reset_vortex_p)
        bank = self._drift_bank(B, rng)
        drift0 = bank.sample(1)[:, 0]
        w = ((self._rings(onion[:, 0]) * self.pin_weight + self._rings(onion[:, 1]) * (1 - self.pin_weight))
             / self.total_rings)[:, None]
        if self.n_out > 1:
            w = np.repeat(w, self.n_out, axis=1)
        initial = self._resistance(w) + drift0[:, None] + self._readout(rng, (B, 1, self.n_out))[:, 0]
        return {"onion": onion, "drift": bank.state, "obs": initial}, initial

    def _run(self, state: dict, x: np.ndarray, rng: np.random.Generator):
        B, T, _ = x.shape
        bank = self._drift_bank(B, rng)
        bank.state = state["drift"].copy()
        bank.advance(self.timing.settle_s)
        drift = bank.sample(T)                                  # (B, T)
        noise = self._readout(rng, (B, T, self.n_out))
        onion = state["onion"]
        out = np.empty((B, T, self.n_out))
        for t in range(T):
            self._check_stop()
            onion, counts = self._step(onion, x[:, t, 0], rng)
            out[:, t, :] = self._resistance(self._weights(counts))
        out += drift[:, :, None] + noise
        return {"onion": onion, "drift": bank.state, "obs": out[:, -1, :].copy()}, out

    # ---- description and timing -----------------------------------------------------------
    def _describe_extra(self) -> dict[str, Any]:
        t = self.timing
        return {"input": {"dims": [1], "units": "Oe", "min": 0.0, "max": self.input_max_oe},
                "output": {"dims": [self.n_out], "units": "ohm"},
                "step_s": t.step_s,
                "observable": "AMR resistance, lock-in output averaged over the rotation"
                              if self.n_out == 1 else "AMR resistance, 50 lock-in samples per rotation",
                "reset": {"field_oe": self.reset_field_oe, "rotations": t.reset_rotations,
                          "settle_oe": self.reset_settle_oe, "seconds": t.reset_s},
                "rings": [self.rows, self.cols]}

    def _instrument_phases(self, x: np.ndarray, reset: bool):
        B, T, _ = x.shape
        t = self.timing
        phases = [("lock-in settle", t.settle_s), ("rotations", T * t.step_s)]
        if reset:
            phases.insert(0, ("reset", t.reset_s))
        return t.request_overhead_s, [phases] * B
