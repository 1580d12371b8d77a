"""``nado rig check STATION.toml``: validate a station without driving anything.

Builds each rig (parameters, backend, driver, limits: a real rig without
``max_field_oe``, ``max_coil_v`` and ``max_slew_oe_per_s`` fails) and prints its
backend, input range after the limits, output and limits; closes every rig.
Exit status 0 when every rig is valid, 1 otherwise (the report names each
problem). See :func:`bridge.station.check_station`.
"""
from __future__ import annotations

import sys

from .rig import rig_subparsers


def register(sub) -> None:
    p = rig_subparsers(sub).add_parser(
        "check", help="validate a station file and print each rig's limits, without driving")
    p.add_argument("station", nargs="?", metavar="STATION.toml", help="station file (default: built-in)")
    p.set_defaults(func=_check)


def _check(args) -> int:
    from bridge.errors import StationError
    from bridge.station import check_station

    try:
        print(check_station(args.station))
    except StationError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0
