"""``nado rig serve|describe|ping``."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from bridge import RigServer
from bridge.backends.testrigs import EchoRig, LeakyRig
from nado.cli import main

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)

STATION = textwrap.dedent("""
    [rigs.echo]
    backend = "echo"

    [rigs.leaky]
    backend = "leaky"
    seed = 1
    n_out = 2
""")


@pytest.fixture()
def endpoint():
    e = f"inproc://cli-{uuid.uuid4().hex}"
    with RigServer({"echo": EchoRig(), "leaky": LeakyRig("leaky", n_out=2)}, e):
        yield e


def test_describe_one_and_all(endpoint, capsys):
    assert main(["rig", "describe", "--connect", endpoint, "--rig", "leaky"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["name"] == "leaky" and d["output"]["dims"] == [2]
    assert main(["rig", "describe", "--connect", endpoint]) == 0
    both = json.loads(capsys.readouterr().out)
    assert sorted(both) == ["echo", "leaky"] and both["echo"]["backend"] == "echo"


def test_ping(endpoint, capsys):
    assert main(["rig", "ping", "--connect", endpoint]) == 0
    out = capsys.readouterr().out
    assert "protocol 1" in out and "echo, leaky" in out and " ms" in out


def test_unreachable_and_unknown_rig_are_one_line_errors(endpoint, capsys, tmp_path):
    assert main(["rig", "ping", "--connect", f"ipc://{tmp_path}/none.sock", "--timeout", "0.2",
                 "--retries", "0"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert main(["rig", "describe", "--connect", endpoint, "--rig", "nra"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nado: error:") and "no rig named 'nra'" in err


def test_rig_without_subcommand_prints_help(capsys):
    assert main(["rig"]) == 2
    assert "serve" in capsys.readouterr().out


def test_rig_group_is_extensible():
    import argparse

    from nado.cli.commands.rig import rig_subparsers
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    rig_subparsers(sub).add_parser("check").set_defaults(func=lambda a: 7)
    from nado.cli.commands import rig
    rig.register(sub)  # the group is shared, whichever registers first
    args = parser.parse_args(["rig", "check"])
    assert args.func(args) == 7
    assert parser.parse_args(["rig", "ping", "--connect", "inproc://x"]).connect == "inproc://x"


@pytest.mark.slow
def test_serve_command_until_sigterm(tmp_path):
    from bridge import RigClient
    st = tmp_path / "station.toml"
    st.write_text(STATION)
    ep = f"ipc://{tmp_path}/serve.sock"
    nado = Path(sys.executable).parent / "nado"
    cmd = [str(nado)] if nado.exists() else [sys.executable, "-m", "nado.cli"]
    proc = subprocess.Popen([*cmd, "rig", "serve", str(st), "--bind", ep], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "serving echo, leaky" in line and ep in line
        with RigClient(ep, "leaky", timeout_s=10) as c:
            assert c.describe()["output"]["dims"] == [2]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "stopped after" in out
