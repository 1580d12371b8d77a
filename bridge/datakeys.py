"""A rig's description in bluesky event-model's ``DataKey`` vocabulary.

:func:`with_data_keys` returns a copy of a rig's ``describe()`` with one more key,
``data_keys``, that states the rig's input and output as event-model DataKeys
(the schema of ``event_model/schemas/event_descriptor.json``, ``$defs/DataKey``)::

    "data_keys": {
      "input":  {"dtype": "number", "shape": [], "dtype_numpy": "<f8", "units": "Oe",
                 "limits": {"control": {"low": 0.0, "high": 80.0}},
                 "source": "nado://tcp://127.0.0.1:5555/nra", "object_name": "nra"},
      "output": {"dtype": "number", "shape": [], "dtype_numpy": "<f8", "units": "ohm",
                 "source": "nado://tcp://127.0.0.1:5555/nra", "object_name": "nra"}}

One DataKey describes the value of one step: ``n`` channels give ``dtype
"array"`` and ``shape [n]``, one channel a scalar (``dtype "number"``, ``shape
[]``). ``dtype_numpy`` is the wire dtype (little-endian float64). The input's
control limits are the range the server enforces (``input.min..input.max``,
after the station's limits); an output carries ``limits`` only when the backend
states ``output.min``/``output.max``. ``source`` is :func:`source_of` the
endpoint and the rig (``nado://ENDPOINT/RIG``; the rig is the text after the
last ``/``).

The server applies it to every describe reply (:mod:`bridge.worker`), so every
backend's description carries DataKeys without doing anything. Their ``source``
names the endpoint, which says how the rig was reached, not what it is: a cache key
or a comparison of rigs uses :func:`without_data_keys`. This module
imports no bluesky package: the vocabulary is plain dicts (tests validate them
against event-model's schema).
"""
from __future__ import annotations

import copy
from typing import Any

SCHEME = "nado://"


def source_of(endpoint: str | None, rig: str) -> str:
    """The DataKey ``source`` of ``rig`` served at ``endpoint``: ``nado://ENDPOINT/RIG``."""
    return f"{SCHEME}{endpoint or 'local'}/{rig}"


def data_key(side: dict[str, Any], source: str, object_name: str, *, control: bool) -> dict[str, Any]:
    """One DataKey for a description's ``input`` or ``output`` table (``dims``, ``units``,
    optional ``min``/``max``); ``control``: its min..max are control limits (the input)."""
    n = int(side["dims"][0])
    key: dict[str, Any] = {"dtype": "number" if n == 1 else "array", "shape": [] if n == 1 else [n],
                           "dtype_numpy": "<f8", "source": source, "object_name": object_name}
    units = side.get("units")
    if isinstance(units, str):
        key["units"] = units
    lo, hi = side.get("min"), side.get("max")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        rng = {"low": float(lo), "high": float(hi)}
        key["limits"] = {"control": rng} if control else {"display": rng}
    return key


def data_keys(description: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """``{"input": DataKey, "output": DataKey}`` of a description (see the module docstring)."""
    name = str(description.get("name", ""))
    return {"input": data_key(description["input"], source, name, control=True),
            "output": data_key(description["output"], source, name, control=False)}


def with_data_keys(description: dict[str, Any], endpoint: str | None,
                   rig: str | None = None) -> dict[str, Any]:
    """A copy of ``description`` with ``data_keys`` added (``rig``, default its ``name``, served
    at ``endpoint``).

    A description without a well-formed ``input``/``output`` is returned unchanged
    (the server refuses such rigs at start; this never hides that).
    """
    try:
        keys = data_keys(description, source_of(endpoint, rig or str(description.get("name", ""))))
    except (KeyError, TypeError, ValueError, IndexError):
        return description
    out = copy.copy(description)
    out["data_keys"] = keys
    return out


SERVER_KEYS = ("data_keys", "max_drive_elements")   # what a server adds to a describe reply


def without_data_keys(description: dict[str, Any]) -> dict[str, Any]:
    """The description as the rig states it: without what the serving server adds (the
    endpoint-dependent ``data_keys`` and its ``max_drive_elements``), i.e. what identifies a rig
    across servers (e.g. in cache keys)."""
    return {k: v for k, v in description.items() if k not in SERVER_KEYS}
