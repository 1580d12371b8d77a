"""The ``nado`` command.

Subcommands live one family per module in :mod:`nado.cli.commands`; each module
defines ``register(subparsers)`` which adds its parsers and sets
``func(args) -> int``. They are discovered, so adding a family touches no
other file.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .. import __version__
from . import commands

__all__ = ["main", "console", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nado", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nado {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for known errors, traceback otherwise
        from bridge.errors import BridgeError
        known = (BridgeError,) + _known_errors()
        if isinstance(exc, known):
            print(f"nado: error: {exc}", file=sys.stderr)
            return 1
        raise


def console() -> None:
    """The ``nado`` executable (and ``python -m nado.cli``): tunes this process's malloc
    (:mod:`nado.cli._malloc`; ``NADO_MALLOC_TUNE=0`` leaves it alone), then runs :func:`main`.
    :func:`main` itself, called from Python, changes no process setting."""
    from ._malloc import tune_allocator
    tune_allocator()
    sys.exit(main())


def _known_errors() -> tuple[type[BaseException], ...]:
    from ..errors import NadoError
    return (NadoError,)


if __name__ == "__main__":  # pragma: no cover
    console()
