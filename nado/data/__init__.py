"""Data from devices: the first stage of the pipeline (collect -> twins -> networks -> report).

Modules (one job each): :mod:`.active_range` (where a device responds),
:mod:`.collect` (drive a rig through the bus and store the dataset, resumable),
:mod:`.store` (the HDF5 layout, format ``nado.dataset`` v1, checksummed blocks),
:mod:`.dataset` (the in-memory :class:`Dataset`, load/save/split),
:mod:`.snr` (DESIGN.md's signal-to-noise ratio), :mod:`.supplement` (held / extreme
input sequences added to a twin's training data).
"""
from .active_range import ActiveRange, find_active_range
from .collect import collect
from .dataset import Dataset, load_dataset, save_dataset, split_dataset, split_indices, without_test
from .snr import measure_snr, snr_from_repeats
from .store import DatasetWriter, Layout

__all__ = ["ActiveRange", "find_active_range", "collect", "Dataset", "load_dataset", "save_dataset",
           "split_dataset", "split_indices", "without_test", "measure_snr", "snr_from_repeats",
           "DatasetWriter", "Layout"]
