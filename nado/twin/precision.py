"""The precision of a frozen twin's MLP matmuls while a network trains through it.

A network trains only its connection weights; its twins are frozen, and their integration with
gradients (:class:`nado.twin._fast._Sequence`) is ~90 % of a training step (``nado bench``,
section ``network``). Those MLP matmuls can run in ``bfloat16`` while everything that accumulates
stays in ``float32``: the twin's state ``y`` (observables, delays, auxiliaries), the Euler update,
the noise ``g dW``, the connection weights, their gradients and Adam. This is mixed-precision
training (the ``torch.autocast`` idea), made explicit for the one place it pays:

====================  =======================================================================
forward, per step     ``x = y[:, :K]`` cast to bf16; hidden layers ``sigmoid(x W + b)`` in bf16;
                      the output layer in bf16, cast to float32 before ``y' = y M + f``
backward, per step    the gradient w.r.t. the output layer cast to bf16, back through the hidden
                      layers in bf16, the gradient w.r.t. ``y`` summed in float32
====================  =======================================================================

bfloat16 keeps float32's exponent and 8 bits of mantissa: a relative rounding error of ~0.4 %
in each hidden activation and drift, against a device whose per-step SNR is 1.5..3 (the NRA:
noise std 30-70 % of the signal's). Where a CPU has native bf16 dot products (AVX512-BF16, AMX)
or a GPU has bf16 tensor cores, those matmuls run several times faster (``nado bench`` measures
the ratio in one run); without them torch emulates bf16 and it is slower - so ``float32`` is the
default and a scenario opts in with ``[train] precision = "bfloat16"``.

Scope: only the gradient path of a frozen twin (network training: NADO, cascade layers, PAT's
backward). Twin fitting, simulation without gradients (evaluation, the twin served as a rig) and
every result a report shows in simulation run in float32.

Usage::

    with matmul_precision("bfloat16"):
        loss = task_loss(net(x).outputs, y)
    loss.backward()              # the backward uses the precision its forward was run with
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

from nado.errors import ConfigError

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_STATE = threading.local()


def check_precision(name: object, key: str = "train.precision") -> str:
    """Validate a precision name; returns it. ``key`` names the setting in the error."""
    if name not in PRECISIONS:
        raise ConfigError(f"{key} = {name!r} is not a precision; use one of {sorted(PRECISIONS)}")
    return str(name)


@contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    """Within the block (this thread only), frozen twins integrated with gradients run their MLP
    matmuls in ``name``'s dtype; nests and restores the outer setting on exit."""
    dtype = PRECISIONS[check_precision(name)]
    outer = getattr(_STATE, "dtype", None)
    _STATE.dtype = dtype
    try:
        yield
    finally:
        _STATE.dtype = outer


def current_matmul_dtype() -> torch.dtype | None:
    """The dtype set by the innermost :func:`matmul_precision` of this thread, or None (the
    state's own dtype)."""
    return getattr(_STATE, "dtype", None)
