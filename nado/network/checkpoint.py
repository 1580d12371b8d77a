"""Saving trained connection weights: ``PATH`` (tensors, ``torch.save``) + ``PATH.json`` (layout).

Only the network's own tensors are stored (weights, biases, the maps' constants);
the twins are not - :func:`load_network` rebuilds the network on the twins it is
given (one per hidden layer) and checks that their shapes fit. Software
references (static / leaky MLP) round-trip the same way (``twins`` unused).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..device import module_device, resolve_device
from ..errors import CheckpointError
from ..io import write_bytes_atomic, write_json_atomic
from .maps import PiSpec
from .model import Network
from .software import SoftwareNetwork

FORMAT, VERSION = "nado-network", 1


def save_network(net, path: str | os.PathLike, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (state_dict) and ``path.with_suffix('.json')`` (layout + ``meta``)."""
    path = Path(path)
    if isinstance(net, Network):
        layout = {"type": "twins", "nodes": net.n_nodes, "n_inputs": net.n_inputs, "n_outputs": net.n_outputs,
                  "pi": [m.pi_spec.to_dict() for m in net.maps], "bias": net.biases is not None,
                  "readout_from": net.readout_from}
    elif isinstance(net, SoftwareNetwork):
        layout = {"type": "software", "kind": net.kind, "nodes": net.n_nodes, "n_inputs": net.n_inputs,
                  "n_outputs": net.n_outputs}
    else:
        raise CheckpointError(f"cannot save a {type(net).__name__}; expected a Network or SoftwareNetwork")
    import io
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, buf)
    write_bytes_atomic(path, buf.getvalue())
    write_json_atomic(path.with_suffix(".json"), {"format": FORMAT, "version": VERSION, "layout": layout,
                                                  "meta": meta or {}})
    return path


def load_network(path: str | os.PathLike, twins: Sequence | None = None, *,
                 map_location: str | torch.device = "cpu"):
    """Rebuild a saved network (on ``twins``, one per hidden layer, for a network of twins).

    A network of twins is built on its twins' device; a software network on ``map_location``
    (a device setting, :func:`nado.device.resolve_device`). Saved tensors are CPU tensors."""
    path = Path(path)
    js = path.with_suffix(".json")
    if not path.is_file() or not js.is_file():
        raise CheckpointError(f"network checkpoint {path} (or {js.name}) missing; run `nado train` first")
    info = json.loads(js.read_text())
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise CheckpointError(f"{js}: not a nado-network v{VERSION} file (format={info.get('format')}, "
                              f"version={info.get('version')})")
    lay = info["layout"]
    if lay["type"] == "software":
        net = SoftwareNetwork(lay["n_inputs"], lay["nodes"], lay["n_outputs"], kind=lay["kind"])
        net.to(resolve_device(map_location, "map_location"))
    else:
        if twins is None or len(twins) != len(lay["nodes"]):
            raise CheckpointError(f"{path}: the network has {len(lay['nodes'])} hidden layers; give one twin each")
        net = Network(twins, lay["nodes"], lay["n_inputs"], lay["n_outputs"],
                      pi=[PiSpec.from_dict(p) for p in lay["pi"]], bias=lay["bias"],
                      readout_from=lay.get("readout_from", "last"))
    device = module_device(net)
    state = torch.load(path, map_location=device, weights_only=True)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the twins given ({exc})") from None
    return net, info.get("meta", {})
