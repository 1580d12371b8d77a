"""nado sweep on a local Ray instance: the quickstart (its --quick budget, trimmed further by fixed
overrides) over two learning rates and two seeds; the table has four rows, trials of one seed share
the dataset and twin fits through the locked stage cache, and a second invocation does no work."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'nado[ray]'")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
GRID = ["train.lr=0.01,0.02",
        # fixed overrides: the quickstart's --quick budget, smaller still (the same code path)
        "collect.sequences=150", "collect.repeats=[16,8]", "collect.resets=40",
        "twins.ode.epochs=4", "twins.sde.warm_iters=30", "twins.sde.gan_iters=30",
        "task.n_train=150", "task.n_test=80", "train.epochs=2", "network.nodes=[8,8]"]

# ray 2.60 (plain `ray`, no [default]) imports and starts under filterwarnings=error without
# emitting a warning; add a narrow pytest.mark.filterwarnings here if a later version does.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(400)]


def _rows(tmp_path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((tmp_path / "sweep" / "table.csv").read_text().splitlines()))


def test_sweep_on_local_ray_resumes_without_work(tmp_path):
    from nado.pipeline.sweep.grid import run_sweep
    logs: list[str] = []
    kw = dict(seeds=2, out=tmp_path / "sweep", quick=True, threads=1, engine="ray", cpus=2,
              log=logs.append)
    first = run_sweep(QUICKSTART, GRID, **kw)
    assert first["engine"] == "ray" and first["failed"] == [] and len(first["ran"]) == 4
    assert not ray.is_initialized()                      # the instance started here was shut down
    rows = _rows(tmp_path)
    assert len(rows) == 4
    assert {(r["train.lr"], r["seed"]) for r in rows} == {("0.01", "0"), ("0.01", "1"), ("0.02", "0"),
                                                          ("0.02", "1")}
    for r in rows:
        assert r["status"] == "done" and 0.0 <= float(r["networks.sde.transfer.accuracy"]) <= 1.0
    # one dataset and one ODE/SDE fit per seed, shared by both learning rates
    results = [json.loads((tmp_path / "sweep" / "trials" / r["trial"] / "results.json").read_text())
               for r in rows]
    misses = [m for res in results for m in res["cache"]["misses"]]
    for stage in ("collect-nra", "ode-nra", "sde-nra"):
        assert sum(m.startswith(stage + "-") for m in misses) == 2, stage
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], set()).add(r["twins.sde.w1"])
    assert all(len(v) == 1 for v in by_seed.values())    # the same twin for both learning rates
    assert (tmp_path / "sweep" / "fig_train_lr.png").stat().st_size > 1000
    assert "| train.lr |" in (tmp_path / "sweep" / "table.md").read_text()

    logs.clear()
    again = run_sweep(QUICKSTART, GRID, **kw)
    assert again["ran"] == [] and len(again["skipped"]) == 4 and again["engine"] == "none"
    assert not any("Ray" in line for line in logs)       # no Ray instance was even started
    assert len(_rows(tmp_path)) == 4
