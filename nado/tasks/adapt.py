"""From a scenario's ``[task]`` table to the network stages' task data.

:func:`build_conditions` returns a list of :class:`Condition` objects, one per
setting the scenario compares (one per visibility for digits; a single one for
Mackey-Glass and EMG). Each condition holds the task data the networks train
on (``nado.network.TaskData``-shaped dicts) and, for digits, one test set per
masking (the paper averages over three maskings).

Shapes (``N`` samples, ``T`` steps, ``F`` features):

- digits: ``x (N, frames, pixels)`` in [0, 1], ``y (N,)``; classification at the last frame.
- emg: ``x (N, 30, 10)`` standardised per electrode on the training set (clipped at +-5 sd),
  ``y (N,)``; the readout window is steps 12..18.
- mackey_glass: the series standardised with the training samples' mean and std
  (inputs and targets alike; ``info["scale_mean"]``, ``info["scale_std"]``) as
  ``x_train (n_windows, window, 1)`` (or ``(1, 1000, 1)``), targets
  ``y (.., .., H)``; test ``(10, 400, 1)``. The runner reports MSE in the series'
  own units (standardised MSE times std squared), as the paper does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Condition:
    """One task setting: ``name`` (e.g. "vis25"), ``data`` (TaskData keyword dict with the
    first masking as test set), ``test_sets`` (one ``x_test`` per masking), ``info``."""

    name: str
    data: dict[str, Any]
    test_sets: tuple[np.ndarray, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def with_test(self, m: int) -> dict[str, Any]:
        return {**self.data, "x_test": self.test_sets[m]}


def build_conditions(scenario) -> list[Condition]:
    """The task conditions of a validated scenario (paths resolved against the scenario file)."""
    t = scenario.task
    p = dict(t.params)
    seed = scenario.run.seed
    if t.family == "digits":
        from .digits import make_digits_task
        out = []
        for vis in p.get("visibility", [25]):
            task = make_digits_task(t.kind, visibility=float(vis), n_train=p.get("n_train"),
                                    n_test=p.get("n_test"), maskings=p.get("maskings", 1),
                                    test_fraction=p.get("test_fraction", 0.25),
                                    data_dir=scenario.resolve_path(p.get("data_dir")), seed=seed)
            data = {"kind": "classification", "x_train": task.train_inputs, "y_train": task.train_labels,
                    "x_test": task.test_inputs[0], "y_test": task.test_labels, "n_classes": 10,
                    "name": f"{t.kind}-vis{vis:g}"}
            out.append(Condition(f"vis{vis:g}", data, tuple(task.test_inputs),
                                 {"visibility": float(vis), "frames": task.n_frames,
                                  "image_shape": list(task.image_shape), "n_train": len(task.train_labels),
                                  "n_test": len(task.test_labels), "maskings": len(task.test_inputs)}))
        return out
    if t.family == "emg":
        from .emg import load_ninapro, write_synthetic
        folder = scenario.resolve_path(p["data_dir"])
        subjects = tuple(p.get("subjects", [1]))
        if p.get("synthetic", False):
            missing = [s for s in subjects if not (folder / f"S{s}_A1_E2.mat").is_file()]
            if missing:
                write_synthetic(folder, missing, seed=seed)
        task = load_ninapro(folder, subjects, window=p.get("window", 30),
                            cutoff_hz=p.get("cutoff_hz", 10.0))
        data = {"kind": "classification", "x_train": task.train_inputs, "y_train": task.train_labels,
                "x_test": task.test_inputs, "y_test": task.test_labels, "n_classes": task.n_classes,
                "name": "emg"}
        return [Condition("emg", data, (task.test_inputs,),
                          {"subjects": list(subjects), "loss_window": list(task.loss_window),
                           "synthetic": bool(p.get("synthetic", False)),
                           "n_train": len(task.train_labels), "n_test": len(task.test_labels)})]
    if t.family == "mackey_glass":
        from .mackey_glass import make_mackey_glass_task
        kw = {k: p[k] for k in ("n_samples", "washout", "n_train", "sections", "section_length",
                                "horizons", "sample_dt", "dt_fine") if k in p}
        task = make_mackey_glass_task(**kw)
        mean, std = float(task.train_inputs.mean()), float(task.train_inputs.std())
        z = lambda x: ((np.asarray(x) - mean) / std).astype(np.float32)  # noqa: E731
        norm = lambda x: z(x)[..., None]  # noqa: E731
        xtr, ytr = norm(task.train_inputs)[None], z(task.train_targets)[None]
        win = p.get("input_window")
        if win:
            starts = range(0, xtr.shape[1] - win + 1, max(1, win // 2))
            xtr = np.stack([xtr[0, s:s + win] for s in starts])
            ytr = np.stack([ytr[0, s:s + win] for s in starts])
        data = {"kind": "regression", "x_train": xtr, "y_train": ytr, "x_test": norm(task.test_inputs),
                "y_test": z(task.test_targets),
                "horizons": tuple(int(h) for h in task.horizons),
                "washout": int(scenario.train.get("washout", 0)), "name": "mackey_glass"}
        return [Condition("mg", data, (data["x_test"],),
                          {"horizons": task.horizons.tolist(), "scale_mean": mean, "scale_std": std,
                           "sections": int(task.test_inputs.shape[0]),
                           "section_length": int(task.test_inputs.shape[1]),
                           "train_windows": int(xtr.shape[0])})]
    raise ValueError(f"unknown task family {t.family!r}")  # validation prevents this
