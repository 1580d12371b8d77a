"""Subcommand families of ``nado``; each module defines ``register(subparsers)``."""
