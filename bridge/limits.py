"""Safety interlocks shared by every backend (real and emulated).

``guard(rig, limits)`` wraps a rig built from a station table with its ``limits``
table (maximum field, coil voltage, slew, ...). The wrapped rig's ``describe()``
reports the tighter of the backend's range and the station's limits, so the
server refuses anything outside them (``OUT_OF_RANGE``) before the device is
touched.
"""
from __future__ import annotations

from typing import Any


def guard(rig: Any, limits: dict[str, Any] | None) -> Any:
    """Return ``rig`` wrapped with the station's ``limits`` (unchanged when None)."""
    if not limits:
        return rig
    raise NotImplementedError("station limits are enforced by the real-rigs work (issue 7)")
