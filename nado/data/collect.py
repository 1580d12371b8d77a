"""Collect a device dataset through the bus: active range, dynamics, repeats, resets.

Everything goes through a ``bridge.RigClient`` (``describe``/``drive``); this
module never imports an emulator. :func:`collect` runs, in order:

1. the active range (:func:`nado.data.active_range.find_active_range`, or the user's
   ``active_range=(lo, hi)``), stored in the file before anything else;
2. ``resets`` K reset samples: drives of one step at the active range's low end,
   keeping the observable measured right after each reset (``initial``);
3. the dynamics set: ``sequences`` N input sequences of ``length`` T, uniform over
   the active range, each after a reset (``mode="sequences"``, the NRA recipe);
   or ``mode="long"``: one long sequence of N*T inputs cut into rows of T, driven
   with ``reset=False`` so each row continues the last, with a reset at every
   batch start and otherwise with probability ``reset_prob`` per row (sporadic
   resets, the ASVI recipe; ``Dataset.dynamics_reset`` marks them);
4. the repeats set: ``repeats=(M, R)``, M sequences each driven R times.

Work is cut into batches of about ``batch`` experiments; batch ``i`` of section
``s`` draws its inputs and its drive seed from ``SeedSequence([seed, s, i])``,
so a batch is the same whenever it runs. Each batch is committed to the HDF5
file (:mod:`nado.data.store`) when done; after an interruption, ``collect`` with
the same arguments and ``resume=True`` continues at the first uncommitted
batch, and the finished file is identical to an uninterrupted run's (given a
rig that honours seeds). ``complete`` is set last.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .active_range import ActiveRange, find_active_range
from .dataset import Dataset, load_dataset
from .store import DatasetWriter, Layout, stored_plan
from ..errors import ConfigError, DatasetError

__all__ = ["collect", "find_active_range", "ActiveRange", "batch_seed"]

_SECTIONS = {"reset": 1, "dynamics": 2, "repeats": 3}


def batch_seed(seed: int, section: str, index: int) -> tuple[int, np.random.Generator]:
    """The drive seed (uint32 int) and input generator of batch ``index`` of ``section``."""
    ss = np.random.SeedSequence([int(seed), _SECTIONS[section], int(index)])
    drive_ss, input_ss = ss.spawn(2)
    return int(drive_ss.generate_state(1)[0]), np.random.default_rng(input_ss)


def _versions() -> dict[str, str]:
    import h5py
    from .. import __version__
    return {"nado": __version__, "numpy": np.__version__, "h5py": h5py.__version__,
            "python": platform.python_version()}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def collect(client: Any, out_path: str | Path, *, sequences: int = 1000, length: int = 20,
            repeats: tuple[int, int] = (100, 100), resets: int = 1000, seed: int = 0,
            active_range: tuple[float, float] | None = None, batch: int = 500,
            mode: str = "sequences", reset_prob: float = 0.02, progress: bool = True,
            resume: bool = True, sweep: dict[str, Any] | None = None,
            on_batch: Callable[[str, int, int], None] | None = None) -> Dataset:
    """Collect a dataset from ``client`` into ``out_path`` (HDF5) and return it.

    ``sequences`` N and ``length`` T: the dynamics set; ``repeats=(M, R)``;
    ``resets`` K; ``seed`` fixes every input and drive seed; ``active_range``
    overrides the sweep (``sweep`` holds extra :func:`find_active_range`
    arguments); ``batch``: experiments per drive; ``mode``/``reset_prob``: see the
    module docstring; ``resume``: continue an unfinished file (else an existing
    file is an error); ``on_batch(section, rows_done, rows_total)`` is called
    after each committed batch. Progress (tqdm, on stderr) shows experiments/s
    and instrument time.
    """
    N, T, K = int(sequences), int(length), int(resets)
    try:
        M, R = (int(v) for v in repeats)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"repeats must be a pair (M sequences, R repeats), got {repeats!r}") from exc
    if min(N, K, M) < 0 or T < 1 or R < 1 or batch < 1:
        raise ConfigError(f"need sequences, resets, M >= 0 and length, R, batch >= 1; got N={N}, T={T}, "
                          f"K={K}, repeats=({M}, {R}), batch={batch}")
    if mode not in ("sequences", "long"):
        raise ConfigError(f"mode must be 'sequences' or 'long', got {mode!r}")
    if not 0 <= reset_prob <= 1:
        raise ConfigError(f"reset_prob must lie in [0, 1], got {reset_prob}")
    desc = client.describe()
    n_in, n_out = int(desc["input"]["dims"][0]), int(desc["output"]["dims"][0])
    layout = Layout(n_dynamics=N, t_dynamics=T, n_repeats=M, r_repeats=R, t_repeats=T, n_reset=K,
                    n_in=n_in, n_out=n_out)
    plan = {"rig": desc.get("name"), "sequences": N, "length": T, "repeats": [M, R], "resets": K,
            "seed": int(seed), "batch": int(batch), "mode": mode, "reset_prob": float(reset_prob),
            "active_range": None if active_range is None else [float(v) for v in active_range],
            "sweep": sweep or {}}
    out_path = Path(out_path)
    if resume and out_path.exists():
        complete, old = stored_plan(out_path)
        if complete:
            if old != json.loads(json.dumps(plan)):
                raise DatasetError(f"{out_path} is a finished dataset collected with {old}, not {plan}; "
                                   "choose another --out or delete it")
            return load_dataset(out_path)
    t0 = time.perf_counter()
    with DatasetWriter(out_path, layout, {"plan": plan}, resume=resume, block_rows=batch) as w:
        if w.get_attr("created") is None:
            w.set_attrs({"plan": plan, "rig": desc, "seeds": {"collect": int(seed)},
                         "versions": _versions(), "created": _now(), "instrument_s": 0.0})
        if w.get_attr("active_lo") is None:
            ar = find_active_range(client, seed=int(seed), override=active_range, **(sweep or {}))
            w.set_attrs({"active_lo": ar.lo, "active_hi": ar.hi, "active_range": ar.to_dict(),
                         "instrument_s": float(w.get_attr("instrument_s")) + ar.instrument_s})
            w.flush()
        lo, hi = w.get_attr("active_lo"), w.get_attr("active_hi")
        runner = _Runner(client, w, lo, hi, seed=int(seed), batch=int(batch), progress=progress,
                         on_batch=on_batch, mode=mode, reset_prob=float(reset_prob))
        runner.run()
        w.finish({"finished": _now(), "wall_s_last_session": time.perf_counter() - t0})
    return load_dataset(out_path)


class _Runner:
    """Drives the batches of every section that are not yet committed."""

    def __init__(self, client, writer: DatasetWriter, lo, hi, *, seed, batch, progress, on_batch,
                 mode, reset_prob):
        self.client, self.w, self.lo, self.hi = client, writer, np.asarray(lo), np.asarray(hi)
        self.seed, self.batch, self.on_batch = seed, batch, on_batch
        self.mode, self.reset_prob = mode, reset_prob
        lay = writer.layout
        self.layout = lay
        total = lay.n_reset + lay.n_dynamics + lay.n_repeats * lay.r_repeats
        done = (writer.done("reset") + writer.done("dynamics")
                + writer.done("repeats") * lay.r_repeats)
        self.bar = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="exp", desc=f"collect {writer.path.name}",
                            dynamic_ncols=True, smoothing=0.1)

    def uniform(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return self.lo + (self.hi - self.lo) * rng.random(shape + (self.layout.n_in,))

    def run(self) -> None:
        try:
            rep_rows = max(1, self.batch // self.layout.r_repeats)
            self._section("reset", self.batch, self._reset_block)
            self._section("dynamics", self.batch, self._dynamics_block)
            self._section("repeats", rep_rows, self._repeats_block)
        finally:
            if self.bar is not None:
                self.bar.close()

    def _section(self, section: str, rows_per_batch: int, make: Callable) -> None:
        total = self.layout.rows(section)
        while (done := self.w.done(section)) < total:
            if done % rows_per_batch:
                raise ConfigError(f"{self.w.path}: {section} has {done} rows, not a whole number of "
                                  f"batches of {rows_per_batch}; resume with the original --batch")
            index = done // rows_per_batch
            rows = min(rows_per_batch, total - done)
            drive_seed, rng = batch_seed(self.seed, section, index)
            arrays, instrument_s = make(rows, drive_seed, rng)
            spent = float(self.w.get_attr("instrument_s", 0.0)) + instrument_s
            new_done = self.w.write(section, arrays, {"instrument_s": spent})
            if self.bar is not None:
                self.bar.update(rows * (self.layout.r_repeats if section == "repeats" else 1))
                self.bar.set_postfix(section=section, instrument_s=f"{spent:.3g}", refresh=False)
            if self.on_batch is not None:
                self.on_batch(section, new_done, total)

    def _reset_block(self, rows, drive_seed, rng):
        inputs = np.broadcast_to(self.lo, (rows, 1, self.layout.n_in)).copy()
        res = self.client.drive(inputs, reset=True, seed=drive_seed)
        return {"initial": np.asarray(res.initial, dtype=np.float64)}, float(res.instrument_s)

    def _dynamics_block(self, rows, drive_seed, rng):
        T = self.layout.t_dynamics
        inputs = self.uniform(rng, (rows, T))
        if self.mode == "sequences":
            res = self.client.drive(inputs, reset=True, seed=drive_seed)
            return {"inputs": inputs, "outputs": res.outputs, "initial": res.initial,
                    "reset": np.ones(rows, np.uint8)}, float(res.instrument_s)
        # one long sequence: rows continue each other; reset at the batch start and sporadically
        flags = rng.random(rows) < self.reset_prob
        flags[0] = True
        outs, inits, spent = [], [], 0.0
        seeds = np.random.SeedSequence(drive_seed).generate_state(rows)
        for r in range(rows):
            res = self.client.drive(inputs[r:r + 1], reset=bool(flags[r]), seed=int(seeds[r]))
            outs.append(res.outputs[0])
            inits.append(res.initial[0])
            spent += float(res.instrument_s)
        return {"inputs": inputs, "outputs": np.stack(outs), "initial": np.stack(inits),
                "reset": flags.astype(np.uint8)}, spent

    def _repeats_block(self, rows, drive_seed, rng):
        T, R = self.layout.t_repeats, self.layout.r_repeats
        inputs = self.uniform(rng, (rows, T))
        res = self.client.drive(np.repeat(inputs, R, axis=0), reset=True, seed=drive_seed)
        n_out = self.layout.n_out
        return {"inputs": inputs, "outputs": np.asarray(res.outputs).reshape(rows, R, T, n_out),
                "initial": np.asarray(res.initial).reshape(rows, R, n_out)}, float(res.instrument_s)
