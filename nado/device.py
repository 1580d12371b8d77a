"""The torch device nado computes on: one setting, resolved in one place.

``[run] device`` in a scenario and ``--device`` on ``nado run/fit/train/transfer/cascade/bench``
take ``"auto"`` (CUDA when ``torch.cuda.is_available()``, else the CPU), ``"cpu"``, ``"cuda"`` or
``"cuda:N"``. :func:`resolve_device` turns the setting into a :class:`torch.device` and raises
:class:`nado.errors.ConfigError` for a malformed string, or for CUDA asked for where there is none
(or fewer GPUs than ``N + 1``). There is one code path: models are moved to the device once and
create their tensors there (noise, initial states, generators); only data coming from numpy
crosses to the device, through :func:`to_device` (pinned memory and a non-blocking copy on a GPU,
so the copy overlaps the computation already queued; zero-copy on the CPU).
"""
from __future__ import annotations

import re

import numpy as np
import torch

from nado.errors import ConfigError

_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_spec(spec: object, key: str = "device") -> str:
    """Validate the syntax of a device setting (no CUDA query); returns it. ``key`` names the
    setting in the error message."""
    if not isinstance(spec, str) or not _SPEC.match(spec.strip()):
        raise ConfigError(f"{key} = {spec!r} is not a device; use \"auto\", \"cpu\", \"cuda\" "
                          "or \"cuda:N\" (N = the GPU's index)")
    return spec.strip()


def resolve_device(spec: str | torch.device | None = "auto", key: str = "device") -> torch.device:
    """``"auto"``/None -> CUDA if available else CPU; ``"cpu"``; ``"cuda"``; ``"cuda:N"``.

    Raises ConfigError (a ValueError) naming ``key`` when the string is not a device or CUDA is
    asked for but not usable here."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = check_device_spec("auto" if spec is None else spec, key)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"{key} = {spec!r}, but CUDA is not available here (torch "
                          f"{torch.__version__}, built for CUDA: {torch.version.cuda or 'no'}); "
                          "use \"cpu\" or \"auto\"")
    dev = torch.device(spec)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{key} = {spec!r}, but this machine has {torch.cuda.device_count()} "
                          f"CUDA device(s) (indices 0..{torch.cuda.device_count() - 1})")
    return dev


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has none)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def to_device(array, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """numpy array (or tensor) -> tensor of ``dtype`` on ``device``.

    CPU: no copy when the dtype already matches. CUDA: through pinned memory with
    ``non_blocking=True``, so the transfer is queued behind the kernels already launched. Other
    devices (pinned memory is CUDA's; the tests' ``meta`` device audit): a plain copy."""
    if torch.is_tensor(array):
        t = array
    else:
        t = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cpu":
        return t.to(dtype)
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.to(dtype).pin_memory()
    return t.to(device, dtype=dtype, non_blocking=True)


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded :class:`torch.Generator` on ``device`` (random draws then stay on the device)."""
    return torch.Generator(device=device).manual_seed(int(seed))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU); for timing only."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
