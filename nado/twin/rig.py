"""A trained twin served as a rig (station backend ``sde``): share a device without the device.

Station table::

    [rigs.nra_twin]
    backend = "sde"
    checkpoint = "runs/nra/twin_sde.pt"   # + twin_sde.json beside it (nado fit writes both)
    seed = 0                               # optional: the rig's own noise stream

``describe()`` says what it is: ``kind = "twin"``, ``backend = "sde"``,
``source = "sim+sde://<checkpoint file name>"``, ``emulated = true``; the input
range is the twin's active range (where it was trained; outside it a twin
extrapolates, so the server refuses such inputs), the units and ``step_s`` are
those of the device it was fitted on (stored by ``nado fit`` in the
checkpoint's JSON under ``extra.rig``), and ``twin`` summarises the config.

``drive(inputs, reset=True, seed=None)`` samples trajectories with the twin's own
noise (an ODE twin checkpoint gives deterministic trajectories):

- ``reset=True``: each experiment starts from an observable drawn from the
  twin's stored reset distribution (the device's measured one);
- ``reset=False``: continues from where the previous drive left off: the delay
  embedding keeps the last ``n_delay + 1`` observables; the auxiliary noise
  variables restart at 0 (they decay within a few steps). B must match the
  previous drive's B. With no previous drive it behaves like ``reset=True``.
- ``seed``: the same inputs and seed give the same outputs (fresh noise with None,
  drawn from the generator seeded by the constructor's ``seed``).

``instrument_s`` is the device time the experiments would have taken:
``B * T * step_s``.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bridge.errors import BadInput
from bridge.rig import DriveResult, check_inputs

from ..errors import RigConfigError

_MAX_BATCH = 16384


class TwinRig:
    """Serve the twin checkpoint ``checkpoint`` as a rig named ``name`` (see module docstring)."""

    kind = "twin"

    def __init__(self, name: str = "twin", *, checkpoint: str, seed: int | None = None,
                 step_s: float | None = None, noise: bool = True) -> None:
        from nado.errors import CheckpointError
        from nado.twin.checkpoint import config_path, load_twin
        if not checkpoint or not isinstance(checkpoint, (str, Path)):
            raise RigConfigError(f"rig '{name}': backend 'sde' needs checkpoint = \"PATH.pt\" (a twin "
                              "written by `nado fit`)")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise RigConfigError(f"rig '{name}': seed must be an int >= 0 or absent, got {seed!r}")
        self.name, self.path = name, Path(checkpoint)
        try:
            self.twin = load_twin(self.path)
            meta = json.loads(config_path(self.path).read_text())
        except CheckpointError as exc:
            raise RigConfigError(f"rig '{name}': {exc}") from exc
        self.twin.requires_grad_(False)
        self.device_desc = (meta.get("extra") or {}).get("rig") or {}
        c = self.config = self.twin.config
        if step_s is None:
            step_s = float(self.device_desc.get("step_s", 0.0))
        if not (isinstance(step_s, (int, float)) and step_s >= 0):
            raise RigConfigError(f"rig '{name}': step_s must be seconds >= 0, got {step_s!r}")
        self.step_s, self.noise = float(step_s), bool(noise)
        self._gen = torch.Generator()
        self._gen.manual_seed(seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63))
        self._window: torch.Tensor | None = None   # (B, n_delay + 1, n_obs) normalised, oldest first
        self._lock = threading.Lock()
        lo, hi = self.twin.active_range
        self._lo, self._hi = float(np.min(lo)), float(np.max(hi))
        self._desc = {
            "name": name, "kind": self.kind, "backend": "sde",
            "source": f"sim+sde://{self.path.name}", "emulated": True,
            "input": {"dims": [c.n_in], "units": self.device_desc.get("input", {}).get("units", ""),
                      "min": self._lo, "max": self._hi},
            "output": {"dims": [c.n_obs], "units": self.device_desc.get("output", {}).get("units", "")},
            "step_s": self.step_s,
            "twin": {"kind": c.kind, "method": c.method, "n_delay": c.n_delay, "n_aux": c.n_aux,
                     "checkpoint": str(self.path), "noise": self.noise and c.kind == "sde"},
            "device": {k: self.device_desc.get(k) for k in ("name", "kind", "backend", "source")
                       if k in self.device_desc},
        }

    def describe(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._desc))

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        x = check_inputs(inputs, self._desc)
        B, T, _ = x.shape
        with self._lock:
            if seed is not None:
                gen = torch.Generator()
                gen.manual_seed(int(seed))
            else:
                gen = self._gen
            if reset or self._window is None:
                x0 = self.twin.sample_initial(B, generator=gen)
                z0 = self.twin.normalise_obs(x0)
                window = z0[:, None, :].expand(B, self.config.n_delay + 1, self.config.n_obs)
            else:
                if self._window.shape[0] != B:
                    raise BadInput(f"reset=False continues {self._window.shape[0]} experiment(s) from "
                                   f"the previous drive, but got B={B}; drive with that B or reset=True")
                window = self._window
            initial = self.twin.denormalise_obs(window[:, -1])
            z = self._run(torch.as_tensor(x, dtype=torch.float32), window, gen)
            self._window = torch.cat([window, z], dim=1)[:, -(self.config.n_delay + 1):].clone()
            if self.noise and self.config.kind == "sde":
                z = self.twin.read(z, gen)      # readout noise: reported, not carried as state
            out = self.twin.denormalise_obs(z)
        return DriveResult(outputs=out.double().numpy(), initial=initial.double().numpy(),
                           instrument_s=B * T * self.step_s)

    def _run(self, s: torch.Tensor, window: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Normalised observables (B, T, n_obs) after each input, from the history ``window``."""
        from nado.twin.integrate import integrate
        c = self.config
        use_noise = self.noise and c.kind == "sde"
        u = self.twin.normalise_inputs(s)
        y0 = window.flip(1).reshape(window.shape[0], -1)          # current observable first
        out = []
        with torch.no_grad():
            packed = self.twin.packed(use_noise)
            for i in range(0, u.shape[0], _MAX_BATCH):
                ub = u[i:i + _MAX_BATCH]
                dw = (self.twin.sample_noise(ub.shape[0], ub.shape[1], generator=gen)
                      if use_noise else None)
                out.append(integrate(packed, ub, y0[i:i + _MAX_BATCH], method=c.method,
                                     substeps=c.substeps, dw=dw))
        return torch.cat(out, 0)

    def make_safe(self) -> None:
        """Nothing to make safe: a twin has no hardware."""

    def close(self) -> None:
        self._window = None
