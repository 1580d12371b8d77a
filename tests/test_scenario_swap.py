"""Swapping (issue 7): scenarios/quickstart_real.toml differs from scenarios/quickstart.toml only in
[station], and the trainer (``nado run``) makes the same sequence of bus calls for both.

Neither real rig can run here (nidaqmx.nra needs NI-DAQmx, the asvi is the lab's own driver), so
both scenarios run with one substitution, made the same way for both: ``bridge.station.load_station``
is wrapped so that every rig of whatever station the scenario names keeps its name and its limits
(the real station's interlocks stay in force: its rigs are served behind ``bridge.limits.guard``)
but is built as :class:`StandInRig`, the emulated rig of its kind with a fixed seed; and
``bridge.station.build_rigs`` is wrapped so that each built rig sits behind a :class:`Recorder`,
which logs what the server asks of it -- (op, rig, input shape, reset, seed, digest of the inputs)
-- in call order: the trainer's bus calls. The two logs must be equal.
"""
from __future__ import annotations

import hashlib
import threading
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e   # runs a pipeline end to end (make test-fast skips it)

ROOT = Path(__file__).resolve().parents[1]
EMULATED = ROOT / "scenarios" / "quickstart.toml"
REAL = ROOT / "scenarios" / "quickstart_real.toml"

LOG: list[tuple] = []
_LOG_LOCK = threading.Lock()


class StandInRig:
    """The backend every rig of either station is built as: the emulated rig of its kind, seed 0."""

    def __init__(self, name: str, *, kind: str) -> None:
        if kind == "nra":
            from emulator.nra import NRARig
            self.inner = NRARig(name=name, seed=0)
        else:
            from emulator.asvi import ASVIRig
            self.inner = ASVIRig(name=name, seed=0)

    def describe(self) -> dict:
        return self.inner.describe()

    def drive(self, inputs, *, reset=True, seed=None):
        return self.inner.drive(inputs, reset=reset, seed=seed)


class Recorder:
    """Wraps a built rig (after its station limits guard): logs what the server asks of it."""

    def __init__(self, name: str, rig) -> None:
        self.name, self.rig = name, rig

    def describe(self) -> dict:
        with _LOG_LOCK:
            LOG.append(("describe", self.name))
        return self.rig.describe()

    def drive(self, inputs, *, reset=True, seed=None):
        x = np.ascontiguousarray(inputs, dtype=np.float64)
        with _LOG_LOCK:
            LOG.append(("drive", self.name, x.shape, bool(reset), seed,
                        hashlib.sha256(x.tobytes()).hexdigest()[:12]))
        return self.rig.drive(x, reset=reset, seed=seed)


def _stand_ins(load_station):
    """A load_station that builds every rig as StandInRig, keeping its name and limits."""
    from bridge.station import RigSpec

    def load(path):
        st = load_station(path)
        rigs = tuple(RigSpec(r.name, f"python:{__name__}:StandInRig", {"kind": r.name}, r.limits)
                     for r in st.rigs)
        return replace(st, rigs=rigs)
    return load


def _recorded(build_rigs):
    def build(station):
        return {name: Recorder(name, rig) for name, rig in build_rigs(station).items()}
    return build


@pytest.mark.parametrize("stem", ["mnist_nra", "mackey_glass_cascade", "emg_nra"])
def test_every_real_scenario_differs_only_in_its_station(stem):
    emulated, real = (tomllib.loads((EMULATED.parent / f"{s}.toml").read_text())
                      for s in (stem, f"{stem}_real"))
    assert emulated.pop("station") != real.pop("station")
    assert emulated == real


def test_real_quickstart_differs_only_in_its_station():
    emulated, real = (tomllib.loads(p.read_text()) for p in (EMULATED, REAL))
    assert emulated.pop("station") != real.pop("station")
    assert emulated == real
    from nado.pipeline.scenario import load_scenario
    a, b = load_scenario(EMULATED), load_scenario(REAL)
    assert a.station.path == "builtin" and b.resolve_path(b.station.path).name == "real.toml"
    assert replace(a, station=b.station, source="", raw={}, run=b.run) == replace(b, source="", raw={})
    # the run folders still differ: the default run name is the file's stem
    assert (a.run.name, b.run.name) == ("quickstart", "quickstart_real")


# the same tiny budget for both (on top of their own [budget] tables, i.e. --quick)
TINY = {"collect": {"sequences": 48, "length": 10, "repeats": [6, 4], "resets": 12, "batch": 24},
        "twins": {"width": 16, "ode": {"epochs": 2, "batch": 64}, "sde": {"warm_iters": 4, "gan_iters": 4,
                                                                             "eval_every": 4}},
        "task": {"n_train": 48, "n_test": 24},
        "network": {"nodes": [4, 4]},
        "train": {"epochs": 1, "batch_size": 24}}


def _run(path: Path, tmp: Path) -> list[tuple]:
    from nado.pipeline.run import Runner
    from nado.pipeline.cache import StageCache
    from nado.pipeline.scenario import merge, validate
    raw = tomllib.loads(path.read_text())
    raw["budget"] = merge(raw.get("budget", {}), TINY)
    sc = validate(raw, quick=True, source=str(path))
    LOG.clear()
    Runner(sc, tmp / "run", StageCache(tmp / "cache"), progress=False).run()
    return list(LOG)


def test_trainer_makes_the_same_bus_calls_for_both_stations(tmp_path, monkeypatch):
    import torch

    import bridge.station as station
    monkeypatch.setattr(station, "load_station", _stand_ins(station.load_station))
    monkeypatch.setattr(station, "build_rigs", _recorded(station.build_rigs))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        calls_emulated = _run(EMULATED, tmp_path / "emulated")
        calls_real = _run(REAL, tmp_path / "real")
    finally:
        torch.set_num_threads(threads)
    drives = [c for c in calls_emulated if c[0] == "drive"]
    assert len(drives) > 10 and {c[1] for c in drives} == {"nra"}     # the run drove the NRA
    assert {c[3] for c in drives} == {True}                          # quickstart collects with resets
    shapes = lambda calls: [c[:5] for c in calls]                    # noqa: E731
    assert shapes(calls_real) == shapes(calls_emulated)              # op, rig, shape, reset, seed
    assert calls_real == calls_emulated                              # and the very same inputs
    print(f"{len(calls_real)} bus calls, {len(drives)} drives, equal for both stations")
