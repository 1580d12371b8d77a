"""A small TOML writer for plain nested tables (what ``nado run`` writes as ``scenario.toml``).

Values: bool, int, float, str, lists of those, inline tables; ``None`` is left out (TOML
has no null). :func:`dump_toml` output reads back with :mod:`tomllib` to the same tables.
"""
from __future__ import annotations

import json
import math
from typing import Any


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else ("nan" if v != v else
                                                                           ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dump_toml(tables: dict[str, Any]) -> str:
    """Write nested tables as TOML (None values are left out; TOML has no null)."""
    lines: list[str] = []

    def emit(prefix: str, table: dict) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not subs):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        if prefix and (scalars or not subs):
            lines.append("")
        for k, v in subs.items():
            emit(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v)

    top = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    for k, v in top.items():
        if v is not None:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    if top:
        lines.append("")
    emit("", {k: v for k, v in tables.items() if isinstance(v, dict)})
    return "\n".join(lines).rstrip() + "\n"
