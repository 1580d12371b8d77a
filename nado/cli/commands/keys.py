"""``nado keys generate NAME --out DIR``: a CurveZMQ key pair for the instrument bus.

Writes ``DIR/NAME.key`` (public: give it away) and ``DIR/NAME.key_secret``
(secret, mode 0600: keep it). See :mod:`bridge.auth` for the whole set-up::

    nado keys generate server --out keys/server     # on the rig PC
    nado keys generate alice --out keys/alice       # on each client
    # allow alice: copy keys/alice/alice.key into the server's clients folder
    # trust the server: copy keys/server/server.key into keys/alice/
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("keys", help="make CurveZMQ key pairs for the instrument bus")
    group = p.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    g = group.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (secret) into DIR")
    g.add_argument("name", metavar="NAME", help="who the keys are for (server, alice, labpc-2, ...)")
    g.add_argument("--out", required=True, metavar="DIR", help="folder to write the two files into")
    g.set_defaults(func=_generate)


def _generate(args) -> int:
    from bridge.auth import generate
    try:
        public, secret = generate(args.name, args.out)
    except (ValueError, FileExistsError) as exc:
        from ...errors import ConfigError
        raise ConfigError(str(exc)) from None
    print(f"wrote {public} (public: copy it where it must be trusted) and {secret} (secret: keep it here)")
    return 0
