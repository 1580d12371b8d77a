"""Rigs in bluesky plans: ``RigDevice`` in a scan and ``collect_plan`` vs ``nado collect``.

The emulated NRA is served in-process (the built-in station) and reached through the
bus; every document the RunEngine emits is validated against event-model's schema.
"""
import uuid

import numpy as np
import pytest

pytest.importorskip("ophyd_async", reason="nado.bluesky needs the bluesky extra")
pytest.importorskip("bluesky")

import bluesky.plans as bp  # noqa: E402
import event_model  # noqa: E402
from bluesky import RunEngine  # noqa: E402
from ophyd_async.core import init_devices  # noqa: E402

from bridge import RigClient  # noqa: E402
from bridge.station import serve  # noqa: E402
from nado.bluesky import RigDevice, collect_plan  # noqa: E402
from nado.data.collect import collect  # noqa: E402
from nado.data.dataset import load_dataset  # noqa: E402


@pytest.fixture(scope="module")
def endpoint():
    ep = f"inproc://bluesky-{uuid.uuid4().hex}"
    server = serve(None, ep)   # the built-in station: emulated nra and asvi
    yield ep
    server.close()


@pytest.fixture
def RE():
    re = RunEngine({}, call_returns_result=True)
    yield re
    if re.state != "idle":
        re.halt()


def record(RE):
    docs = []

    def keep(name, doc):
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
        docs.append((name, doc))

    RE.subscribe(keep)
    return docs


def test_scan_over_the_emulated_nra(endpoint, RE):
    docs = record(RE)
    with init_devices():
        nra = RigDevice(endpoint, "nra", seed=3)
    RE(bp.scan([nra], nra.input, 15, 35, 21))
    names = [n for n, _ in docs]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 21
    assert docs[-1][1]["exit_status"] == "success"
    desc = next(d for n, d in docs if n == "descriptor")
    # the input is the scan's motor, read as its own object (what BestEffortCallback looks up)
    assert list(docs[0][1]["motors"]) == ["nra-input"] and desc["object_keys"]["nra-input"] == ["nra-input"]
    keys = desc["data_keys"]
    src = f"nado://{endpoint}/nra"
    assert keys["nra-input"]["source"] == keys["nra-output"]["source"] == src
    assert keys["nra-input"]["units"] == "Oe" and keys["nra-output"]["units"] == "ohm"
    assert keys["nra-input"]["limits"]["control"] == {"low": 0.0, "high": 80.0}
    assert keys["nra-output"]["dtype"] == "number" and keys["nra-output"]["shape"] == []
    events = [d for n, d in docs if n == "event"]
    u = np.array([e["data"]["nra-input"] for e in events])
    y = np.array([e["data"]["nra-output"] for e in events])
    np.testing.assert_allclose(u, np.linspace(15, 35, 21))
    assert np.all(np.isfinite(y))
    # the NRA is dead below ~20 Oe and switches above: the resistance moves far beyond its noise
    assert y[-10:].mean() - y[:4].mean() > 10 * y[:4].std()
    inst = [e["data"]["nra-instrument_s"] for e in events]
    assert np.all(np.diff(inst) > 0)   # every step spent instrument time


def test_steps_match_one_drive_of_the_same_sequence(endpoint, RE):
    """A scan's steps are one sequence: a reset, then each step continues the last (seeded)."""
    with init_devices():
        nra = RigDevice(endpoint, "nra", seed=7)
    docs = record(RE)
    RE(bp.list_scan([nra], nra.input, [20.0, 26.0, 31.0]))
    y = [d["data"]["nra-output"] for n, d in docs if n == "event"]
    with RigClient(endpoint, "nra") as c:
        first = c.drive(np.array([[[20.0]]]), reset=True, seed=7)
        rest = [c.drive(np.array([[[v]]]), reset=False, seed=7 + k).outputs[0, 0, 0]
                for k, v in ((1, 26.0), (2, 31.0))]
    np.testing.assert_allclose(y, [first.outputs[0, 0, 0], *rest])


SIZES = dict(sequences=30, length=8, repeats=(4, 3), resets=10, seed=5, batch=15,
             sweep={"levels": 9, "repeats": 2, "steps": 4})


def test_collect_plan_writes_the_dataset_nado_collect_writes(endpoint, RE, tmp_path):
    with RigClient(endpoint, "nra") as client:
        ref = collect(client, tmp_path / "cli.h5", progress=False, **SIZES)
    with init_devices():
        nra = RigDevice(endpoint, "nra")
    docs = record(RE)
    ds = RE(collect_plan(nra, tmp_path / "plan.h5", md={"sample": "ring-7"}, **SIZES)).plan_result
    again = load_dataset(tmp_path / "plan.h5")
    for field in ("dynamics_inputs", "dynamics_outputs", "dynamics_initial", "repeats_inputs",
                  "repeats_outputs", "repeats_initial", "reset_initial", "active_lo", "active_hi"):
        np.testing.assert_array_equal(getattr(ds, field), getattr(ref, field), err_msg=field)
        np.testing.assert_array_equal(getattr(again, field), getattr(ref, field), err_msg=field)
    for attr in ("rig", "plan", "active_range", "seeds", "instrument_s"):
        assert ds.attrs[attr] == ref.attrs[attr], attr
    # the documents: one run, one event per drive, carrying what was written
    start = docs[0][1]
    assert start["plan_name"] == "collect_plan" and start["sample"] == "ring-7"
    assert start["nado_collect"]["sequences"] == 30 and start["nado_rig"]["name"] == "nra"
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "success"
    desc = next(d for n, d in docs if n == "descriptor")
    assert desc["name"] == "drives"
    assert desc["data_keys"]["nra-sequence-outputs"]["shape"] == [None, None, 1]
    events = [d for n, d in docs if n == "event"]
    # sweep (1) + resets (10/15 -> 1) + dynamics (30/15 -> 2) + repeats (4 rows, 15 // 3 = 5 per batch -> 1)
    assert len(events) == 5
    total = sum(e["data"]["nra-sequence-drive_s"] for e in events)
    assert total == pytest.approx(ref.attrs["instrument_s"])
    dyn = [e for e in events if np.shape(e["data"]["nra-sequence-outputs"]) == (15, 8, 1)]
    np.testing.assert_array_equal(np.concatenate([e["data"]["nra-sequence-outputs"] for e in dyn]),
                                  ref.dynamics_outputs)


def test_a_failing_collection_fails_the_run(endpoint, RE, tmp_path):
    with init_devices():
        nra = RigDevice(endpoint, "nra")
    docs = record(RE)
    with pytest.raises(Exception, match="active range"):
        RE(collect_plan(nra, tmp_path / "bad.h5", active_range=(50.0, 10.0), **{
            k: v for k, v in SIZES.items() if k != "sweep"}))
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "fail"
