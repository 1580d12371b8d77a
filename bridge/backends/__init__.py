"""Rig backends that ship with bridge (found through the ``bridge.backends`` entry points)."""
