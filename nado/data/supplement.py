"""Structured input sequences that supplement a dataset's dynamics set (``[collect] holds``).

The paper's dynamics set drives a device with independent uniform inputs at every
step. A network's layers do not: after training, ``h`` often holds a node's input
near one value for several steps, or at the ends of the active range. On the
emulated NRA a twin fitted on uniform sequences alone follows such inputs poorly
(held at the top of the range, the device settles while the twin keeps rising),
and networks trained through it lose most of their accuracy on transfer.

:func:`hold_sequences` draws ``n`` sequences of ``length`` steps made of holds of
1..``hold_max`` steps; each hold's value is uniform over the active range with
probability 1/2, else the range's low or high end. :func:`drive_holds` drives them
through a ``bridge.RigClient`` (batches of ``batch`` experiments, each after a
reset, seeded per batch) and :func:`with_holds` appends them to a dataset's
dynamics set (train split only; the held-out split stays as collected).

Shapes: inputs ``(n, length, n_in)`` in the rig's units; outputs ``(n, length, n_out)``;
initial ``(n, n_out)``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np


def hold_sequences(n: int, length: int, lo, hi, *, hold_max: int = 8, seed: int = 0) -> np.ndarray:
    """``(n, length, n_in)`` piecewise-constant inputs inside ``[lo, hi]`` (see the module docstring)."""
    lo, hi = np.atleast_1d(np.asarray(lo, float)), np.atleast_1d(np.asarray(hi, float))
    if np.any(hi <= lo) or hold_max < 1:
        raise ValueError(f"need lo < hi and hold_max >= 1, got {lo}..{hi}, {hold_max}")
    rng = np.random.default_rng(seed)
    out = np.empty((int(n), int(length), lo.size))
    for i in range(int(n)):
        t = 0
        while t < length:
            span = int(rng.integers(1, hold_max + 1))
            pick = rng.random(lo.size)
            value = np.where(pick < 0.5, rng.uniform(lo, hi), np.where(pick < 0.75, lo, hi))
            out[i, t:t + span] = value
            t += span
    return out


def drive_holds(client, n: int, length: int, lo, hi, *, hold_max: int = 8, batch: int = 500,
                seed: int = 0) -> dict[str, np.ndarray | float]:
    """Drive ``n`` hold sequences; ``{inputs, outputs, initial, instrument_s}``."""
    x = hold_sequences(n, length, lo, hi, hold_max=hold_max, seed=seed)
    outs, inits, inst = [], [], 0.0
    for b, i in enumerate(range(0, len(x), int(batch))):
        r = client.drive(x[i:i + batch], reset=True, seed=int(seed) * 100003 + b)
        outs.append(np.asarray(r.outputs, dtype=np.float64))
        inits.append(np.asarray(r.initial, dtype=np.float64))
        inst += float(r.instrument_s)
    return {"inputs": x, "outputs": np.concatenate(outs), "initial": np.concatenate(inits),
            "instrument_s": inst}


def with_holds(train, holds: dict) -> object:
    """``train`` (a Dataset) with the hold sequences appended to its dynamics set."""
    n = len(holds["inputs"])
    if n == 0:
        return train
    reset = np.concatenate([train.resets, np.ones(n, bool)])
    return replace(train,
                   dynamics_inputs=np.concatenate([train.dynamics_inputs, holds["inputs"]]),
                   dynamics_outputs=np.concatenate([train.dynamics_outputs, holds["outputs"]]),
                   dynamics_initial=np.concatenate([train.dynamics_initial, holds["initial"]]),
                   dynamics_reset=reset)
