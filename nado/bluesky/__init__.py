"""nado in bluesky (needs ``pip install 'nado[bluesky]'``): rigs as ophyd-async devices, collection as a plan.

- :class:`RigDevice` (:mod:`nado.bluesky.device`): a bus rig as an ophyd-async device;
  ``RE(bp.scan([nra], nra.input, 15, 35, 21))``.
- :func:`collect_plan` (:mod:`nado.bluesky.plan`): ``nado collect``'s recipe inside a
  RunEngine, emitting event-model documents and writing the same HDF5 dataset.
"""
try:
    import bluesky as _bluesky  # noqa: F401
    import ophyd_async as _ophyd_async  # noqa: F401
except ImportError as exc:   # say how to get them, not just which module is missing
    raise ImportError(f"nado.bluesky needs ophyd-async and bluesky ({exc}); "
                      "pip install 'nado[bluesky]'") from exc

from .device import Drive, RigDevice, RigSequence
from .plan import collect_plan

__all__ = ["RigDevice", "RigSequence", "Drive", "collect_plan"]
