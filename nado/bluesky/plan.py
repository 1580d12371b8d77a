"""``collect_plan``: ``nado collect`` as a bluesky plan.

    RE(collect_plan(nra, "data.h5", sequences=2000, length=20, repeats=(100, 50), resets=500))

The recipe is :func:`nado.data.collect.collect` itself (active-range sweep, resets, random
sequences, repeats, batch seeds, the HDF5 file and its resume): it runs on a helper
thread with a client whose every drive is handed to this plan, which performs it as
RunEngine messages on the :class:`~nado.bluesky.RigDevice` (``set`` of its ``sequence``,
then ``trigger_and_read``), so each drive becomes one event of the stream ``drives``
(data keys ``{name}-sequence-inputs``, ``-outputs``, ``-initial``, ``-reset_flag``,
``-seed``, ``-drive_s``), between one start and one stop document. The values the
event carries are the values written to the file. The start document holds the
collection settings (``nado_collect``), the HDF5 path (``nado_dataset``) and the rig's
description (``nado_rig``).

The file is the one ``nado collect`` writes with the same arguments (tests compare
them). An aborted plan leaves it resumable: run the same plan again to continue.
The plan returns the :class:`nado.data.dataset.Dataset`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import threading
from pathlib import Path
from typing import Any

import numpy as np
from bluesky import plan_stubs as bps

from bridge.rig import DriveResult

from .device import Drive, RigDevice

STREAM = "drives"


class _PlanClient:
    """The client :func:`nado.data.collect.collect` drives on its thread: each drive waits for the plan."""

    def __init__(self, rig: RigDevice) -> None:
        self.rig = rig
        self.request: tuple | None = None            # (inputs, reset, seed, reply future)
        self.pending = threading.Event()             # a request (or the end) is waiting for the plan
        self.finished = False
        self.dataset: Any = None
        self.error: BaseException | None = None
        self.closed = False

    def describe(self) -> dict[str, Any]:
        return copy.deepcopy(self.rig.description)

    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        if self.closed:
            raise RuntimeError("the bluesky plan driving this collection has ended")
        reply: concurrent.futures.Future = concurrent.futures.Future()
        self.request = (np.array(inputs, dtype=np.float64), bool(reset), seed, reply)
        self.pending.set()
        return reply.result()

    def run(self, out_path: Path, kwargs: dict[str, Any]) -> None:
        """The helper thread: the whole collection, then wake the plan for the last time."""
        from ..data.collect import collect
        try:
            self.dataset = collect(self, out_path, **kwargs)
        except BaseException as exc:   # handed to the plan, which raises it in the RunEngine
            self.error = exc
        finally:
            self.finished = True
            self.pending.set()

    def wait(self):
        """An awaitable (for ``bps.wait_for``) done when a request or the end is waiting; safe to repeat."""
        return asyncio.get_running_loop().run_in_executor(None, self.pending.wait)


def collect_plan(rig: RigDevice, out_path: str | Path, *, md: dict[str, Any] | None = None, **collect_kwargs):
    """A bluesky plan running :func:`nado.data.collect.collect` through ``rig``; returns the Dataset.

    ``out_path``: the HDF5 dataset; ``md``: extra start-document metadata;
    ``collect_kwargs``: :func:`nado.data.collect.collect`'s (``sequences``, ``length``,
    ``repeats``, ``resets``, ``seed``, ``active_range``, ``batch``, ``mode``,
    ``reset_prob``, ``sweep``, ``resume``); ``progress`` defaults to False.
    """
    out_path = Path(out_path)
    kwargs = {"progress": False, **collect_kwargs}
    client = _PlanClient(rig)
    start_md = {"plan_name": "collect_plan", "nado_dataset": str(out_path.resolve()),
                "nado_collect": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()
                                 if k not in ("progress", "on_batch")},
                "nado_rig": rig.description, **(md or {})}
    thread = threading.Thread(target=client.run, args=(out_path, kwargs), name="nado-collect", daemon=True)
    yield from bps.open_run(start_md)
    thread.start()
    try:
        while True:
            yield from bps.wait_for([client.wait])
            if client.request is None:
                break
            inputs, reset, seed, reply = client.request
            client.request = None
            client.pending.clear()
            try:
                yield from bps.mv(rig.sequence, Drive(inputs, reset, seed))
                reading = yield from bps.trigger_and_read([rig.sequence], name=STREAM)
            except BaseException as exc:
                reply.set_exception(exc)
                raise
            seq = rig.sequence
            reply.set_result(DriveResult(outputs=np.asarray(reading[seq.outputs.name]["value"]),
                                         initial=np.asarray(reading[seq.initial.name]["value"]),
                                         instrument_s=float(reading[seq.drive_s.name]["value"])))
    finally:
        client.closed = True
        if client.request is not None:   # the collection thread waits on this: let it fail
            client.request[3].set_exception(RuntimeError("the collection plan was stopped"))
        client.pending.set()
        thread.join()
    if client.error is not None:
        raise client.error
    yield from bps.close_run()
    return client.dataset
