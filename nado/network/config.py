"""Settings of network training, as one frozen dataclass (``[network]`` / ``[train]`` TOML keys).

Architecture: ``nodes`` (nodes per hidden layer), ``pi`` (a
:class:`~nado.network.maps.PiSpec` dict, or one per layer), ``bias``, ``init_gain``.

Optimisation: Adam on the connection weights (``lr``, ``weight_decay``) for
``epochs`` with ``batch_size``; ``loss`` = ``auto`` (ce_last for classification,
mse for regression) | ``ce_last`` | ``ce_window`` | ``mse``; ``window``
``[lo, hi)`` the steps ce_window averages over (and where classification reads
out); ``washout`` steps the mse loss skips; ``tbptt`` = window K for truncated
BPTT (None = full BPTT) with ``burn_in`` steps evolved without gradients and
``segments_per_epoch`` random segments; ``clip_norm``; ``schedule`` = none |
cosine | step (``step_size`` epochs, ``gamma``); ``plateau_factor`` (None = off): an epoch whose
mean training loss is not below the lowest epoch loss so far multiplies the learning rate by it
for the rest of the fit, on top of the schedule (a learning rate too high for the network's depth
stalls the loss: 3 x 200 MNIST at lr 0.005, docs/classification.md section 8); early stopping after
``patience`` epochs without a better validation metric (a ``val_fraction`` of
the training set is held out when the task has no validation split);
``noise`` trains through the twins' noise; ``max_train`` caps the training set;
``augment`` = none | remask (partially observable digits: each epoch shows every
training image under a fresh random partition into frames,
:func:`nado.tasks.digits.remask_frames`).

Speed: ``precision`` = ``float32`` | ``bfloat16`` | ``auto`` (bfloat16 where the device has it
natively, :func:`nado.twin.precision.resolve_precision`), the dtype of the frozen twins' MLP matmuls
in the training forward and backward (state, noise, weights and gradients stay float32; see
:mod:`nado.twin.precision`); evaluation in simulation always runs in float32.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from ..twin.precision import check_precision
from .maps import PiSpec


@dataclass(frozen=True)
class TrainConfig:
    nodes: tuple[int, ...] = (32, 32)
    pi: Any = None
    bias: bool = True
    init_gain: float = 1.0
    readout_from: str = "last"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    loss: str = "auto"
    window: tuple[int, int] | None = None
    washout: int = 0
    tbptt: int | None = None
    burn_in: int = 0
    segments_per_epoch: int = 256
    clip_norm: float | None = 1.0
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.5
    plateau_factor: float | None = None
    patience: int | None = None
    val_fraction: float = 0.1
    noise: bool = True
    max_train: int | None = None
    augment: str = "none"
    eval_batch: int = 512
    precision: str = "float32"
    progress: bool = True
    checkpoint: str | None = None     # fit's resume file (nado.network.train.fit); not a setting

    def __post_init__(self) -> None:
        if not self.nodes or any(int(n) < 1 for n in self.nodes):
            raise ConfigError(f"network.nodes must list >= 1 nodes per layer, got {self.nodes}")
        if self.readout_from not in ("last", "all"):
            raise ConfigError(f"network.readout_from must be last or all, got {self.readout_from!r}")
        if self.loss not in ("auto", "ce_last", "ce_window", "mse"):
            raise ConfigError(f"train.loss must be auto, ce_last, ce_window or mse, got {self.loss!r}")
        if self.schedule not in ("none", "cosine", "step"):
            raise ConfigError(f"train.schedule must be none, cosine or step, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"train.epochs, batch_size and lr must be positive "
                              f"(got {self.epochs}, {self.batch_size}, {self.lr})")
        if self.plateau_factor is not None and not 0.0 < self.plateau_factor < 1.0:
            raise ConfigError(f"train.plateau_factor must be in (0, 1) or absent, got {self.plateau_factor}")
        if self.augment not in ("none", "remask"):
            raise ConfigError(f"train.augment must be none or remask, got {self.augment!r}")
        if self.tbptt is not None and self.tbptt < 1:
            raise ConfigError(f"train.tbptt must be >= 1 steps or absent, got {self.tbptt}")
        if self.burn_in < 0 or self.washout < 0:
            raise ConfigError("train.burn_in and train.washout must be >= 0 steps")
        check_precision(self.precision)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")

    def pi_specs(self) -> PiSpec | list[PiSpec]:
        if isinstance(self.pi, (list, tuple)):
            return [p if isinstance(p, PiSpec) else PiSpec.from_dict(p) for p in self.pi]
        return self.pi if isinstance(self.pi, PiSpec) else PiSpec.from_dict(self.pi)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, **overrides) -> "TrainConfig":
        """Build from a TOML table; unknown keys raise :class:`ConfigError` naming them."""
        d = {**(d or {}), **overrides}
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown network/train key(s) {sorted(unknown)}; known: {sorted(names)}")
        if "nodes" in d:
            d["nodes"] = tuple(int(n) for n in d["nodes"])
        if d.get("window") is not None:
            d["window"] = tuple(int(w) for w in d["window"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["nodes"] = list(self.nodes)
        return out
