"""``nado rig``: serve rigs on the instrument bus, and look at them.

::

    nado rig serve [STATION.toml] --bind tcp://0.0.0.0:5555   # built-in station without a file
    nado rig describe --connect tcp://rigpc:5555 [--rig nra]  # JSON
    nado rig ping --connect tcp://rigpc:5555
    nado rig status --connect tcp://rigpc:5555                # JSON: holders, leases, counters

With CurveZMQ (a station ``[security]`` table) clients need keys: ``NADO_KEYS=DIR``
(see ``nado keys generate`` and :mod:`bridge.auth`).

Other modules add subcommands to the ``rig`` group without touching this file:
in ``nado/cli/commands/NAME.py``::

    from .rig import rig_subparsers

    def register(sub):
        p = rig_subparsers(sub).add_parser("check", help="...")
        p.set_defaults(func=run)

``rig_subparsers(sub)`` creates the ``rig`` group on first use, whichever module
the CLI registers first.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

DEFAULT_BIND = "tcp://127.0.0.1:5555"


def rig_subparsers(sub) -> argparse._SubParsersAction:
    """The ``nado rig`` group's subparsers (created once per top-level parser)."""
    group = getattr(sub, "_nado_rig_group", None)
    if group is None:
        p = sub.add_parser("rig", help="serve, describe and ping rigs on the instrument bus",
                           description=__doc__.split("\n\n")[0])
        group = p.add_subparsers(dest="rig_command", metavar="RIG_COMMAND")
        p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
        sub._nado_rig_group = group
    return group


def register(sub) -> None:
    group = rig_subparsers(sub)

    p = group.add_parser("serve", help="serve a station's rigs (built-in nra + asvi without a file)")
    p.add_argument("station", nargs="?", metavar="STATION.toml", help="station file (default: built-in)")
    p.add_argument("--bind", action="append", metavar="ENDPOINT",
                   help=f"endpoint to bind, repeatable (default {DEFAULT_BIND}; tcp://0.0.0.0:5555 for the network)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every refusal and fault")
    p.set_defaults(func=_serve)

    for name, helptext, func in (("describe", "print rig descriptions as JSON", _describe),
                                 ("ping", "check that a server answers; print its rigs", _ping),
                                 ("status", "print the server's counters, lease holders as JSON", _status)):
        q = group.add_parser(name, help=helptext)
        q.add_argument("--connect", required=True, metavar="ENDPOINT", help="server endpoint, e.g. tcp://rigpc:5555")
        if name == "describe":
            q.add_argument("--rig", metavar="NAME", help="only this rig (default: every rig)")
        q.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="per try (default 5)")
        q.add_argument("--retries", type=int, default=1, help="tries after the first (default 1)")
        q.add_argument("--keys", metavar="DIR", help="CurveZMQ keys folder: your NAME.key_secret and the "
                                                    "server's server.key (default: $NADO_KEYS)")
        q.set_defaults(func=func)


def _serve(args) -> int:
    from bridge.server import RigServer
    from bridge.station import build_rigs, load_station, server_options

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    station = load_station(args.station)
    options = server_options(station)   # [server] and [security]: refuses open network binds
    rigs = build_rigs(station)
    try:
        server = RigServer(rigs, args.bind or [DEFAULT_BIND], **options)
    except BaseException:
        for rig in rigs.values():
            getattr(rig, "close", lambda: None)()
        raise
    sec = options["security"]
    mode = (f"CurveZMQ, clients allowed by keys in {sec.clients}" if sec.curve else "no keys")
    print(f"serving {', '.join(rigs)} ({station.path or 'built-in station'}) on {', '.join(server.endpoints)}; "
          f"{mode}; Ctrl-C or SIGTERM stops", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    print(f"stopped after {server.status().get('requests', 0)} requests", flush=True)
    return 0


def _client(args, rig=None):
    from bridge.client import RigClient
    return RigClient(args.connect, rig, timeout_s=args.timeout, retries=args.retries,
                     curve_keys=getattr(args, "keys", None))


def _describe(args) -> int:
    with _client(args, args.rig) as client:
        if args.rig:
            out = client.describe()
        else:
            out = {name: client.describe(rig=name) for name in client.hello()["rigs"]}
    return _print_json(out)


def _status(args) -> int:
    with _client(args) as client:
        return _print_json(client.status())


def _print_json(obj) -> int:
    """Print ``obj`` as indented JSON on stdout; the command's exit status (0)."""
    json.dump(obj, sys.stdout, indent=2)
    print()
    return 0


def _ping(args) -> int:
    with _client(args) as client:
        rtt = client.ping()
        hello = client.hello()
    print(f"{args.connect}: {hello['server']} speaks protocol {hello['protocol']}, "
          f"serves {', '.join(hello['rigs'])}; ping {rtt * 1e3:.2f} ms")
    return 0
