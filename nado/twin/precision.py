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
default, a scenario opts in with ``[train] precision = "bfloat16"``, and ``"auto"`` takes
bfloat16 exactly where the device has it natively (:func:`resolve_precision`: a CUDA device that
supports bf16; a CPU whose flags list ``avx512_bf16`` or ``amx_bf16`` (x86) or ``bf16``
(aarch64)), float32 elsewhere. Measured with ``nado bench --only network`` (2 cores, MNIST network
step): on an AMD EPYC with AVX512-BF16 bf16 took 0.58x float32's time; on an Intel Xeon with
AVX512 but no bf16 instructions it took 1.55x (0.54 s against 0.35 s, one thread). The
precision a network actually trained in is recorded in its training history (``precision``).

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
AUTO = "auto"
_STATE = threading.local()
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 "flags"; aarch64 "Features"


def check_precision(name: object, key: str = "train.precision") -> str:
    """Validate a precision name (one of :data:`PRECISIONS` or ``"auto"``); returns it. ``key``
    names the setting in the error."""
    if name != AUTO and name not in PRECISIONS:
        raise ConfigError(f"{key} = {name!r} is not a precision; use one of "
                          f"{sorted(PRECISIONS) + [AUTO]}")
    return str(name)


def native_bfloat16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (not emulated): a CUDA device
    with bf16 support, or a CPU whose flags name bf16 dot-product instructions (Linux
    ``/proc/cpuinfo``; False where it cannot be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & _CPU_BF16_FLAGS)


def _cpuinfo(*keys: str) -> str | None:
    """The first value of one of ``keys`` in Linux's ``/proc/cpuinfo``; None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in keys:
                    return value.strip()
    except OSError:
        pass
    return None


def _cpu_flags() -> set[str]:
    return set((_cpuinfo("flags", "Features") or "").split())


def cpu_vendor() -> str | None:
    """The CPU's vendor string (``"GenuineIntel"``, ``"AuthenticAMD"``, ...); None where unknown."""
    return _cpuinfo("vendor_id")


def resolve_precision(name: str, device: torch.device | str = "cpu") -> str:
    """The concrete precision for ``name`` on ``device``: ``"auto"`` becomes ``"bfloat16"``
    where :func:`native_bfloat16` and ``"float32"`` elsewhere; other names are returned as given."""
    check_precision(name)
    if name != AUTO:
        return name
    return "bfloat16" if native_bfloat16(device) else "float32"


@contextmanager
def matmul_precision(name: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """Within the block (this thread only), frozen twins integrated with gradients run their MLP
    matmuls in ``name``'s dtype (``"auto"``: see :func:`resolve_precision` on ``device``); nests
    and restores the outer setting on exit."""
    dtype = PRECISIONS[resolve_precision(name, device)]
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
