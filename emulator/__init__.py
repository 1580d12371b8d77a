"""Emulated rigs: physics-style NRA and ASVI devices.

Each rig implements :class:`bridge.rig.Rig` and is registered under the
``bridge.backends`` entry-point group (``physics.nra``, ``physics.asvi``). emulator imports
only :mod:`bridge` (never :mod:`nado`); a trained twin served as a rig (backend ``sde``) is
:mod:`nado.twin.rig`.

Modules: :mod:`emulator.nra` (nanoring array, AMR), :mod:`emulator.asvi`
(spin-vortex ice, FMR), :mod:`emulator.noise` (noise sources),
:mod:`emulator.timing` (instrument timing constants, simpy timeline, clocks),
:mod:`emulator.base` (shared drive logic), :mod:`emulator.errors`. DESIGN.md's SNR
measurement of a rig is :func:`nado.data.snr.measure_snr`.
"""

__all__: list[str] = []   # the rigs are reached by module (emulator.nra, emulator.asvi) or entry point
