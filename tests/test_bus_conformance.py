"""Conformance of every backend the station knows, driven through the bus.

Parametrised over every name in the ``bridge.backends`` entry-point group. A
backend that cannot be built from ``[rigs.X] backend = "..."`` alone gets what it
needs from ``NEEDS`` below: the ``sde`` backend a small saved twin, ``nidaqmx.nra``
the fake NI-DAQ task factory that plays the emulated NRA through the coil and
carrier chain (with the station limits a real rig must have). Mock backends must
be as strict as the real ones (the ophyd-async lesson), so the same checks run
on all of them; the only exemptions are stated where they apply (a real rig's
noise cannot be seeded, and ``replay`` answers only inputs it recorded:
tests/test_replay.py).
"""
import uuid

import numpy as np
import pytest

from bridge import BadInput, OutOfRange, RigClient, RigServer
from bridge.errors import BridgeError
from bridge.station import RigSpec, Station, build_rig, known_backends

DESCRIBE_KEYS = {"name", "kind", "backend", "source", "emulated", "input", "output", "step_s"}


class Counting:
    """Proxy counting drive() calls that reach the rig."""

    def __init__(self, rig):
        self.rig, self.calls = rig, 0

    def describe(self):
        return self.rig.describe()

    def drive(self, inputs, *, reset=True, seed=None):
        self.calls += 1
        return self.rig.drive(inputs, reset=reset, seed=seed)

    def close(self):
        close = getattr(self.rig, "close", None)
        if close:
            close()


def _sde_checkpoint(tmp):
    from test_twin_rig import RIG, small_twin

    from nado.twin.checkpoint import save_twin
    path = tmp / "twin_sde.pt"
    save_twin(small_twin(), path, extra={"rig": RIG})
    return {"checkpoint": str(path)}


def _fake_daq_rig(name):
    from test_realrig_daq import CAL, LIMITS, emulated_response

    from bridge.backends.daq.fake import FakeTaskFactory
    from bridge.backends.daq.nra import DaqNRARig
    from bridge.limits import guard
    fake = FakeTaskFactory(emulated_response(), oe_per_volt=CAL, noise_v=2e-3, mod_ohm=0.3)
    return guard(DaqNRARig(name, oe_per_volt=CAL, task_factory=fake), LIMITS)


# backend -> how to build it when its defaults are not enough (params from a temp dir, or a rig)
NEEDS = {"sde": ("params", _sde_checkpoint), "nidaqmx.nra": ("rig", _fake_daq_rig),
         "ophyd": ("rig", lambda name: __import__("ophyd_leaky").build(name)),  # a soft-signal stage
         "replay": ("skip", "replay answers only the inputs it recorded, not these random ones; "
                            "tests/test_replay.py drives it through the bus")}


@pytest.fixture(scope="module", params=known_backends())
def bus(request, tmp_path_factory):
    backend = request.param
    name = backend.replace(".", "_")
    how, make = NEEDS.get(backend, (None, None))
    if how == "skip":
        pytest.skip(make)
    try:
        if how == "rig":
            rig = make(name)
        else:
            params = make(tmp_path_factory.mktemp(name)) if how == "params" else {}
            rig = build_rig(Station(None, (RigSpec(name, backend, params),)), name)
    except (BridgeError, ImportError) as exc:
        pytest.skip(f"backend {backend!r} cannot be built with defaults here: {exc}")
    counting = Counting(rig)
    ep = f"inproc://conformance-{uuid.uuid4().hex}"
    server = RigServer({name: counting}, ep).start()
    client = RigClient(ep, name, timeout_s=60.0, retries=0)
    yield client, counting, client.describe()
    client.close()
    server.close()


def short(d, shape):
    """Keep real (serial, slow) rigs to fewer experiments: the checks do not need more."""
    return (1, *shape[1:]) if not d["emulated"] else shape


def inputs(d, shape, seed=0):
    lo, hi = d["input"]["min"], d["input"]["max"]
    return np.random.default_rng(seed).uniform(lo, hi, size=(*shape, d["input"]["dims"][0]))


def test_describe_schema(bus):
    client, _, d = bus
    assert DESCRIBE_KEYS <= set(d), f"missing {DESCRIBE_KEYS - set(d)}"
    assert d["name"] == client.rig
    assert isinstance(d["emulated"], bool) and "://" in d["source"]
    for side in ("input", "output"):
        dims = d[side]["dims"]
        assert isinstance(dims, list) and len(dims) == 1 and int(dims[0]) >= 1
        assert isinstance(d[side]["units"], str)
    assert np.isfinite(d["input"]["min"]) and np.isfinite(d["input"]["max"])
    assert d["input"]["min"] < d["input"]["max"]
    assert d["step_s"] >= 0


def test_shapes(bus):
    client, _, d = bus
    n_out = d["output"]["dims"][0]
    res = client.drive(inputs(d, (2, 5)), seed=1)
    assert res.outputs.shape == (2, 5, n_out) and res.initial.shape == (2, n_out)
    assert res.outputs.dtype == np.float64 and np.all(np.isfinite(res.outputs))
    assert np.isfinite(res.instrument_s) and res.instrument_s >= 0


def test_same_seed_same_outputs(bus):
    client, _, d = bus
    if not d["emulated"]:
        pytest.skip("a real rig's noise cannot be seeded; its reproducibility is the device's")
    u = inputs(d, (2, 6), seed=2)
    a, b = client.drive(u, seed=11), client.drive(u, seed=11)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.initial, b.initial)


def test_different_seeds_differ_for_noisy_rigs(bus):
    client, _, d = bus
    u = inputs(d, short(d, (2, 6)), seed=3)
    free1, free2 = client.drive(u), client.drive(u)
    if np.array_equal(free1.outputs, free2.outputs):
        pytest.skip(f"{d['backend']} is noise-free: unseeded drives repeat exactly")
    a, b = client.drive(u, seed=1), client.drive(u, seed=2)
    assert not np.array_equal(a.outputs, b.outputs)


def test_reset_false_continues_from_the_previous_drive(bus):
    client, _, d = bus
    lo, hi = d["input"]["min"], d["input"]["max"]
    n_in = d["input"]["dims"][0]
    follow = inputs(d, (1, 4), seed=4)
    runs = {}
    for label, level in (("high", hi), ("low", lo)):
        client.drive(np.full((1, 10, n_in), level), seed=5)
        runs[label, "continued"] = client.drive(follow, reset=False, seed=6)
        client.drive(np.full((1, 10, n_in), level), seed=5)
        runs[label, "reset"] = client.drive(follow, reset=True, seed=6)
    # after a reset the history does not matter; continuing, it does
    a, b = runs["high", "reset"].outputs, runs["low", "reset"].outputs
    if d["emulated"]:
        np.testing.assert_array_equal(a, b)
    else:  # a real rig's measurement noise is not seeded: equal within 5 % of the response span
        span = np.ptp(np.concatenate([r.outputs.ravel() for r in runs.values()]))
        np.testing.assert_allclose(a, b, rtol=0, atol=0.05 * span)
    hi_c, lo_c = runs["high", "continued"], runs["low", "continued"]
    assert not (np.array_equal(hi_c.outputs, lo_c.outputs) and np.array_equal(hi_c.initial, lo_c.initial))


def test_bad_inputs_refused_before_the_rig(bus):
    client, counting, d = bus
    n_in = d["input"]["dims"][0]
    mid = 0.5 * (d["input"]["min"] + d["input"]["max"])
    before = counting.calls
    bad = [np.full((1, 3), mid), np.full((1, 3, n_in + 1), mid), np.full((0, 3, n_in), mid),
           np.array([[[np.nan] * n_in]]), np.array([[[np.inf] * n_in]])]
    for x in bad:
        with pytest.raises(BadInput):
            client.drive(x)
    assert counting.calls == before


def test_out_of_range_refused_before_the_rig(bus):
    client, counting, d = bus
    lo, hi = d["input"]["min"], d["input"]["max"]
    n_in = d["input"]["dims"][0]
    span = hi - lo
    before = counting.calls
    for value in (hi + 0.01 * span, lo - 0.01 * span):
        x = np.full((1, 3, n_in), 0.5 * (lo + hi))
        x[0, 1, 0] = value
        with pytest.raises(OutOfRange, match="range"):
            client.drive(x)
    assert counting.calls == before
    client.drive(np.full((1, 2, n_in), hi))  # the bounds themselves are allowed
    client.drive(np.full((1, 2, n_in), lo))
    assert counting.calls == before + 2
