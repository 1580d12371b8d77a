"""``nado demo`` runs the quickstart scenario (the end-to-end run itself is tests/test_scenario_quickstart.py)."""
from __future__ import annotations

import pytest

from nado.cli import main
from nado.cli.commands import demo


def test_demo_runs_the_quickstart_and_prints_a_summary(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_run_scenario(path, out=None, fresh=False, quick=False, progress=True):
        seen.update(path=path, out=out, fresh=fresh, quick=quick)
        return {"networks": {"sde": {"sim": {"accuracy": 0.862}, "transfer": {"accuracy": 0.837}},
                             "leaky": {"sim": {"accuracy": 0.94}, "transfer": None}},
                "rigs": {"nra": {"snr": 2.37}}}

    monkeypatch.setattr("nado.pipeline.run.run_scenario", fake_run_scenario)
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert seen["path"] == demo.QUICKSTART and demo.QUICKSTART.is_file()
    assert seen["quick"] is True and seen["out"] == str(tmp_path)
    out = capsys.readouterr().out
    assert "86.2" in out and "83.7" in out and "94.0" in out
    assert "nra 2.37" in out


def test_demo_names_a_missing_scenario(tmp_path, capsys):
    assert main(["demo", "--scenario", str(tmp_path / "nope.toml")]) == 1
    assert "nope.toml" in capsys.readouterr().err
