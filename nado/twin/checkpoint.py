"""Twin checkpoints: ``PATH`` holds the ``state_dict`` (``torch.save`` of tensors only), and
``PATH.with_suffix(".json")`` holds ``{"format": "nado-twin", "version": 1, "config": {...}}``.

No module is pickled: loading rebuilds the :class:`Twin` from the JSON config and loads the
tensors with ``torch.load(weights_only=True)``. Both files are written atomically (temp file, then
``os.replace``). Any mismatch (missing file, wrong version, unknown config keys, missing or
unexpected tensors, wrong shapes) raises :class:`nado.errors.CheckpointError` saying what is wrong.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from nado.device import resolve_device
from nado.errors import CheckpointError, ConfigError
from nado.io import save_torch_atomic, write_json_atomic
from nado.twin.config import CONFIG_VERSION, TwinConfig
from nado.twin.model import Twin

FORMAT = "nado-twin"


def config_path(path: str | os.PathLike) -> Path:
    """The JSON file beside a checkpoint."""
    return Path(path).with_suffix(".json")


def save_twin(twin: Twin, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``path`` (state_dict) and ``path.with_suffix('.json')`` (config, version, ``extra``)."""
    path = Path(path)
    if path.suffix == ".json":
        raise CheckpointError(f"{path}: the state_dict path must not end in .json (use e.g. twin.pt)")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in twin.state_dict().items()}
    save_torch_atomic(path, state)
    meta = {"format": FORMAT, "version": CONFIG_VERSION, "config": twin.config.to_dict(),
            "state_file": path.name}
    if extra:
        meta["extra"] = extra
    write_json_atomic(config_path(path), meta)
    return path


def load_twin(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Twin:
    """Rebuild a :class:`Twin` from ``path`` and its JSON; raises CheckpointError on mismatch.

    ``map_location``: the device the twin is built on (a device setting, see
    :func:`nado.device.resolve_device`); checkpoints hold CPU tensors and load on any device."""
    path = Path(path)
    device = resolve_device(map_location, "map_location")
    meta_path = config_path(path)
    for p in (path, meta_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: no such file; a twin checkpoint is PATH plus "
                                  f"PATH.json, written by nado.twin.save_twin / `nado fit`")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not readable JSON ({exc}); refit the twin") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a nado twin checkpoint (format "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != CONFIG_VERSION:
        raise CheckpointError(f"{meta_path}: checkpoint version {meta.get('version')!r}, but this "
                              f"nado reads version {CONFIG_VERSION}; refit the twin with this nado")
    try:
        config = TwinConfig.from_dict(meta["config"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{meta_path}: invalid twin config: {exc}") from exc
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: cannot read the state_dict ({exc}); refit the twin") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, found {type(state).__name__}")
    twin = Twin(config).to(device)
    expected = twin.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: the tensors do not match the config in {meta_path.name} "
            f"(missing {missing}, unexpected {unexpected}, wrong shapes {wrong}); the two files "
            "belong to different twins: save them together with save_twin")
    twin.load_state_dict(state)
    twin.eval()
    return twin
