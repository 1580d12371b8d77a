"""Twin configuration: the architecture and the normalisation constants, as plain JSON-able data.

A :class:`TwinConfig` fully determines the shapes of a twin's ``state_dict``, so a checkpoint is
the state_dict plus ``config.to_dict()`` (see :mod:`nado.twin.checkpoint`).

Units: inputs ``s`` and observables ``x`` are in the rig's physical units (e.g. Oe, ohm). Time is
counted in *steps* (one input sample = 1.0); ``substeps`` splits each step into equal dyadic
integration steps ``h = 1 / substeps``. Auxiliary timescales ``tau`` are in steps too.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from nado.errors import ConfigError

CONFIG_VERSION = 1
KINDS = ("ode", "sde")
METHODS = {"ode": ("euler", "rk4"), "sde": ("euler", "heun")}


@dataclass(frozen=True)
class TwinConfig:
    """Architecture of a neural-ODE (``kind="ode"``) or neural-SDE (``kind="sde"``) twin.

    - ``n_in``, ``n_obs``: input and observable channels; ``n_delay``: delays in the embedding
      ``y = (x(t), ..., x(t - n_delay))`` (NRA 5, ASVI 0); ``n_aux``: auxiliary noise variables
      (SDE only; 0 for an ODE).
    - ``width``, ``depth``: hidden width and number of hidden layers of the drift MLP ``f`` and
      of the diffusion MLP ``g``.
    - ``method``: ``"euler"`` or ``"rk4"`` (ODE), ``"euler"`` (Euler-Maruyama) or ``"heun"``
      (stochastic Heun, Stratonovich) for an SDE; ``substeps``: integration steps per input sample
      (a power of two keeps ``h`` dyadic).
    - ``input_lo``/``input_hi`` (n_in,): the active range, mapped to [-1, 1] inside the twin;
      ``obs_mean``/``obs_std`` (n_obs,): observables are standardised with these inside the twin.
    - ``n_reset``: number of stored reset samples (the measured distribution of ``x`` after reset).
    - ``tau0``, ``tau_ratio``: the auxiliary timescales start at ``tau0 / tau_ratio**k`` steps.
    - ``delays``: ``"shift"`` (delay entries are exact past observables) or ``"learned"`` (the
      paper's ``f`` over all of ``y``: shift plus a learned residual; see
      :mod:`nado.twin.integrate`).
    - ``init_state_gain`` (n_obs,) in [0, 1], or empty (= all 1): the fraction of a measured
      initial observable's deviation from the mean reset observable that is device *state*; the
      rest is readout noise of that one measurement. A device whose reset is deterministic (the
      ASVI: a saturating field) has gains near 0 - its repeats' initial spectra differ by readout
      noise only, and integrating from them would carry that noise into the state. Fitted by
      :func:`nado.twin.fit_sde.fit_sde`; see :meth:`nado.twin.model.Twin.embed`.
    - ``readout_std`` (n_obs,) >= 0 in normalised units, or empty (= none): white measurement
      noise added to each observable the SDE twin reports, ``x = state + readout_std * eps``,
      that the state does not carry forward (the drift sees the state, not the noisy reading).
      Physical reason: an instrument's readout noise (the ASVI's spectrum, the NRA's resistance
      measurement) is independent from sample to sample, while the twin's diffusion is process
      noise that passes through the drift; without this term a twin whose device noise is mostly
      readout noise has to mimic it with process noise, which the frozen drift amplifies over
      the first steps. Fitted by :func:`nado.twin.fit_sde.fit_sde` (step 6 of its docstring).
    """

    kind: str
    n_in: int
    n_obs: int
    n_delay: int = 5
    n_aux: int = 10
    width: int = 64
    depth: int = 2
    method: str = "euler"
    substeps: int = 1
    input_lo: tuple[float, ...] = ()
    input_hi: tuple[float, ...] = ()
    obs_mean: tuple[float, ...] = ()
    obs_std: tuple[float, ...] = ()
    n_reset: int = 1
    tau0: float = 0.6
    tau_ratio: float = 0.7
    delays: str = "learned"
    init_state_gain: tuple[float, ...] = ()
    readout_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"TwinConfig.{key}: {why}")

        if self.kind not in KINDS:
            raise bad("kind", f"must be one of {KINDS}, got {self.kind!r}")
        if self.method not in METHODS[self.kind]:
            raise bad("method", f"a {self.kind} twin supports {METHODS[self.kind]}, got {self.method!r}")
        for key in ("n_in", "n_obs", "width", "depth", "substeps", "n_reset"):
            if int(getattr(self, key)) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)!r}")
        if self.n_delay < 0 or self.n_aux < 0:
            raise bad("n_delay/n_aux", "must be >= 0")
        if self.delays not in ("shift", "learned"):
            raise bad("delays", f"must be 'shift' or 'learned', got {self.delays!r}")
        if self.kind == "ode" and self.n_aux != 0:
            raise bad("n_aux", "an ODE twin has no auxiliary variables; set n_aux=0")
        # Normalisation tuples: default to the identity map, coerce to float tuples.
        defaults = {"input_lo": (-1.0,) * self.n_in, "input_hi": (1.0,) * self.n_in,
                    "obs_mean": (0.0,) * self.n_obs, "obs_std": (1.0,) * self.n_obs}
        for key, default in defaults.items():
            value = getattr(self, key)
            value = default if len(value) == 0 else tuple(float(v) for v in np.asarray(value).ravel())
            if len(value) != len(default):
                raise bad(key, f"needs {len(default)} values, got {len(value)}")
            if not all(math.isfinite(v) for v in value):
                raise bad(key, "values must be finite")
            object.__setattr__(self, key, value)
        if any(hi <= lo for lo, hi in zip(self.input_lo, self.input_hi)):
            raise bad("input_hi", "each input_hi must exceed input_lo (the active range)")
        if any(sd <= 0 for sd in self.obs_std):
            raise bad("obs_std", "standard deviations must be > 0")
        gain = tuple(float(v) for v in np.asarray(self.init_state_gain, dtype=float).ravel())
        if gain and (len(gain) != self.n_obs or not all(0.0 <= v <= 1.0 for v in gain)):
            raise bad("init_state_gain", f"needs {self.n_obs} values in [0, 1] (or none), got {len(gain)}")
        object.__setattr__(self, "init_state_gain", gain)
        readout = tuple(float(v) for v in np.asarray(self.readout_std, dtype=float).ravel())
        if readout and (len(readout) != self.n_obs or not all(math.isfinite(v) and v >= 0 for v in readout)):
            raise bad("readout_std", f"needs {self.n_obs} finite values >= 0 (or none), got {readout!r}")
        if readout and self.kind != "sde":
            raise bad("readout_std", "only an SDE twin has noise; an ODE twin takes none")
        object.__setattr__(self, "readout_std", readout)
        if not (self.tau0 > 0 and 0 < self.tau_ratio <= 1):
            raise bad("tau0/tau_ratio", "need tau0 > 0 and 0 < tau_ratio <= 1")

    @property
    def state_dim(self) -> int:
        """Size of the delay-embedded observable state ``y``: ``n_obs * (n_delay + 1)``."""
        return self.n_obs * (self.n_delay + 1)

    @property
    def n_noise(self) -> int:
        """Number of Wiener processes (diagonal noise): ``n_obs + n_aux`` for an SDE, else 0."""
        return self.n_obs + self.n_aux if self.kind == "sde" else 0

    @property
    def h(self) -> float:
        """Integration step in steps (input samples)."""
        return 1.0 / self.substeps

    def replace(self, **changes: Any) -> "TwinConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict including ``version``."""
        d = asdict(self)
        for key in ("input_lo", "input_hi", "obs_mean", "obs_std", "init_state_gain", "readout_std"):
            d[key] = list(d[key])
        d["version"] = CONFIG_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TwinConfig":
        """Inverse of :meth:`to_dict`; raises ConfigError on a wrong version or unknown keys."""
        d = dict(d)
        version = d.pop("version", None)
        if version != CONFIG_VERSION:
            raise ConfigError(f"twin config version {version!r} is not supported (this nado reads "
                              f"version {CONFIG_VERSION}); refit the twin with this nado")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"twin config has unknown keys {unknown}; it was written by another "
                              "nado version")
        for key in ("input_lo", "input_hi", "obs_mean", "obs_std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
