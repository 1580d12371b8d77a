"""Emulated rigs: physics-style NRA and ASVI devices, and trained twins served as rigs.

Each rig implements :class:`bridge.rig.Rig` and is registered under the
``bridge.backends`` entry-point group (``physics.nra``, ``physics.asvi``, ``sde``).
"""
