"""Emulated rigs: physics-style NRA and ASVI devices, and trained twins served as rigs.

Each rig implements :class:`bridge.rig.Rig` and is registered under the
``bridge.backends`` entry-point group (``physics.nra``, ``physics.asvi``, ``sde``).

Modules: :mod:`emulator.nra` (nanoring array, AMR), :mod:`emulator.asvi`
(spin-vortex ice, FMR), :mod:`emulator.noise` (noise sources),
:mod:`emulator.timing` (instrument timing constants, simpy timeline, clocks),
:mod:`emulator.base` (shared drive logic), :mod:`emulator.calibrate` (DESIGN.md's
SNR measurement), :mod:`emulator.errors`.
"""
