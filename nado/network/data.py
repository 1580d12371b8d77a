"""Task data as the network stages take it, and the task metrics.

:class:`TaskData` holds float arrays in task units:

- classification: ``x_*`` ``(N, T, F)``, ``y_*`` ``(N,)`` integer labels; the
  loss/metric look at the output at the last step (``readout_steps=(T-1, T)``)
  or the mean over a window of steps.
- regression: ``x_*`` ``(N, T, F)``, ``y_*`` ``(N, T, H)`` targets (one column
  per horizon, e.g. Mackey-Glass ``x(t+h)``); metrics skip the first
  ``washout`` steps.

:func:`as_task_data` accepts a TaskData, a dict with these keys, or any object
with these attributes (so the tasks package's own containers pass straight in).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class TaskData:
    kind: str                       # "classification" | "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    n_classes: int | None = None
    horizons: tuple[int, ...] | None = None
    washout: int = 0
    name: str = "task"

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "regression"):
            raise ConfigError(f"task kind must be 'classification' or 'regression', got {self.kind!r}")
        for nm in ("x_train", "x_test"):
            if np.asarray(getattr(self, nm)).ndim != 3:
                raise ConfigError(f"{nm} must be (N, T, F), got shape {np.shape(getattr(self, nm))}")

    @property
    def n_inputs(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def n_outputs(self) -> int:
        if self.kind == "classification":
            return int(self.n_classes or int(np.max(self.y_train)) + 1)
        return int(self.y_train.shape[-1])

    def with_inputs(self, x_train, x_test, x_val=None) -> "TaskData":
        """Same targets, new inputs (the cascade feeds recorded activities in)."""
        return replace(self, x_train=np.asarray(x_train), x_test=np.asarray(x_test),
                       x_val=None if x_val is None else np.asarray(x_val),
                       y_val=self.y_val if x_val is not None else None)


_KEYS = ("kind", "x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "n_classes",
         "horizons", "washout", "name")


def as_task_data(obj: Any) -> TaskData:
    """Coerce a TaskData / dict / attribute object into a :class:`TaskData`."""
    if isinstance(obj, TaskData):
        return obj
    get = obj.get if isinstance(obj, dict) else (lambda k, d=None: getattr(obj, k, d))
    kw = {k: get(k) for k in _KEYS if get(k) is not None}
    missing = [k for k in ("kind", "x_train", "y_train", "x_test", "y_test") if k not in kw]
    if missing:
        raise ConfigError(f"task data lacks {missing}; give x_train/y_train/x_test/y_test and kind")
    for k in ("x_train", "x_test", "x_val"):
        if k in kw:
            kw[k] = np.asarray(kw[k], dtype=np.float32)
    for k in ("y_train", "y_test", "y_val"):
        if k in kw:
            kw[k] = np.asarray(kw[k], dtype=np.int64 if kw["kind"] == "classification" else np.float32)
    if "horizons" in kw:
        kw["horizons"] = tuple(int(h) for h in kw["horizons"])
    return TaskData(**kw)


def accuracy(outputs: np.ndarray, labels: np.ndarray, steps: tuple[int, int] | None = None) -> float:
    """Fraction correct from outputs ``(N, T, C)`` (mean over ``steps`` window, default last step)."""
    o = np.asarray(outputs)
    lo, hi = steps if steps is not None else (o.shape[1] - 1, o.shape[1])
    pred = o[:, lo:hi].mean(axis=1).argmax(-1)
    return float(np.mean(pred == np.asarray(labels)))


def regression_metrics(outputs: np.ndarray, targets: np.ndarray, washout: int = 0,
                       horizons: tuple[int, ...] | None = None) -> dict[str, Any]:
    """``{mse, nmse, mse_by_horizon}`` over steps ``>= washout``; nmse = mse / var(target)."""
    o = np.asarray(outputs, dtype=np.float64)[:, washout:]
    y = np.asarray(targets, dtype=np.float64)[:, washout:]
    err = ((o - y) ** 2).reshape(-1, y.shape[-1]).mean(0)
    var = y.reshape(-1, y.shape[-1]).var(0)
    out = {"mse": float(err.mean()), "nmse": float((err / np.where(var > 0, var, 1.0)).mean())}
    keys = horizons if horizons is not None and len(horizons) == len(err) else range(len(err))
    out["mse_by_horizon"] = {str(h): float(e) for h, e in zip(keys, err)}
    return out


def metrics(task: TaskData, outputs: np.ndarray, split: str = "test",
            readout_steps: tuple[int, int] | None = None) -> dict[str, Any]:
    """The task's metric dict for ``outputs`` on ``split`` ('train' | 'val' | 'test')."""
    y = getattr(task, f"y_{split}")
    if task.kind == "classification":
        return {"accuracy": accuracy(outputs, y, readout_steps)}
    return regression_metrics(outputs, y, task.washout, task.horizons)
