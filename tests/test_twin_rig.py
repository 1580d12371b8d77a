"""A saved twin served as a rig through the bus (station backend "sde")."""
import itertools

import numpy as np
import pytest
import torch

from bridge import RigClient
from bridge.errors import BadInput, OutOfRange, StationError
from bridge.station import serve
from nado.twin import Twin, TwinConfig
from nado.twin.checkpoint import save_twin

_ids = itertools.count()
RIG = {"name": "nra", "kind": "nra", "backend": "physics.nra", "source": "sim+physics://nra",
       "input": {"dims": [1], "units": "Oe", "min": 0.0, "max": 80.0},
       "output": {"dims": [1], "units": "ohm"}, "step_s": 0.015625}


def small_twin(kind="sde"):
    torch.manual_seed(0)
    cfg = TwinConfig(kind=kind, n_in=1, n_obs=1, n_delay=2, n_aux=2 if kind == "sde" else 0,
                     width=8, depth=1, input_lo=(20.0,), input_hi=(35.0,), obs_mean=(249.0,),
                     obs_std=(0.5,), n_reset=4)
    twin = Twin(cfg, reset_samples=np.array([[248.0], [248.2], [248.4], [248.6]]))
    if kind == "sde":
        with torch.no_grad():  # make the noise visible
            twin.g[-1].bias.fill_(0.0)
    return twin


@pytest.fixture
def station(tmp_path):
    twin = small_twin()
    save_twin(twin, tmp_path / "twin_sde.pt", extra={"rig": RIG})
    save_twin(small_twin("ode"), tmp_path / "twin_ode.pt", extra={"rig": RIG})
    path = tmp_path / "station.toml"
    path.write_text(f'[rigs.tw]\nbackend = "sde"\ncheckpoint = "{tmp_path / "twin_sde.pt"}"\nseed = 3\n'
                    f'[rigs.tw_ode]\nbackend = "sde"\ncheckpoint = "{tmp_path / "twin_ode.pt"}"\n')
    ep = f"inproc://test-twin-rig-{next(_ids)}"
    server = serve(str(path), ep)
    clients = [RigClient(ep, "tw", timeout_s=20), RigClient(ep, "tw_ode", timeout_s=20)]
    yield twin, clients
    for c in clients:
        c.close()
    server.close()


def test_describe(station):
    _, (client, _) = station
    d = client.describe()
    assert d["backend"] == "sde" and d["emulated"] is True and d["kind"] == "twin"
    assert d["source"] == "sim+sde://twin_sde.pt"
    assert (d["input"]["min"], d["input"]["max"]) == (20.0, 35.0)   # the twin's active range
    assert d["input"]["units"] == "Oe" and d["output"]["units"] == "ohm"
    assert d["step_s"] == RIG["step_s"] and d["device"]["name"] == "nra"


def test_drive_shapes_seeds_and_noise(station):
    twin, (client, ode_client) = station
    s = np.random.default_rng(0).uniform(20, 35, (6, 9, 1))
    a = client.drive(s, seed=5)
    assert a.outputs.shape == (6, 9, 1) and a.initial.shape == (6, 1)
    assert a.instrument_s == pytest.approx(6 * 9 * RIG["step_s"])
    assert set(np.round(a.initial[:, 0], 4)) <= {248.0, 248.2, 248.4, 248.6}
    np.testing.assert_array_equal(client.drive(s, seed=5).outputs, a.outputs)
    assert not np.array_equal(client.drive(s, seed=6).outputs, a.outputs)
    # the same as simulating the twin with that seed
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ref = twin.simulate(torch.as_tensor(s, dtype=torch.float32), generator=gen).double().numpy()
    np.testing.assert_allclose(a.outputs, ref, rtol=1e-6)
    # repeats of one input spread (own noise); the ODE twin from one initial state does not
    rep = np.repeat(s[:1], 50, axis=0)
    assert client.drive(rep, seed=1).outputs[:, -1, 0].std() > 1e-3
    x0 = ode_client.drive(rep, seed=1)
    same = x0.initial[:, 0] == x0.initial[0, 0]
    assert np.ptp(x0.outputs[same, :, 0], axis=0).max() < 1e-6


def test_continue_without_reset(station):
    _, (client, _) = station
    s = np.full((2, 5, 1), 30.0)
    first = client.drive(s, seed=1)
    cont = client.drive(s, reset=False, seed=2)
    np.testing.assert_allclose(cont.initial, first.outputs[:, -1], rtol=1e-6)
    with pytest.raises(BadInput, match="B=3"):
        client.drive(np.full((3, 5, 1), 30.0), reset=False)
    with pytest.raises(OutOfRange):
        client.drive(np.full((1, 5, 1), 50.0))


def test_bad_checkpoint(tmp_path):
    from nado.twin.rig import TwinRig
    with pytest.raises(StationError, match="checkpoint"):
        TwinRig("x", checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(StationError, match="checkpoint"):
        TwinRig("x", checkpoint="")
