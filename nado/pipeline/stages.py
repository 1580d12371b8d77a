"""Stage helpers the ``nado train | transfer | cascade`` commands share (and ``nado run`` may use).

- :func:`load_twins_dir` reads fitted twins ``DIR/KIND-ode.pt`` and ``DIR/KIND-sde.pt``
  (checkpoints of :func:`nado.twin.checkpoint.save_twin`).
- :func:`twins_by_layer` / :func:`clients_by_layer` order them by ``[network] layers``.
- :func:`train_stage`, :func:`transfer_stage`, :func:`cascade_stage`: one task
  condition each, returning the plain dicts written to ``train.json``,
  ``transfer.json`` and ``cascade.json`` under the output folder.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..network.baselines import reservoir_baseline
from ..network.cascade import compare_cascade
from ..network.checkpoint import load_network, save_network
from ..network.config import TrainConfig
from ..network.data import as_task_data
from ..network.train import evaluate, train_network, train_software
from ..network.transfer import transfer_metrics

TWIN_VARIANTS = {"sde": ("sde", True), "ode": ("ode", False)}
SOFTWARE_VARIANTS = {"mlp": "static", "leaky": "leaky"}


def load_twins_dir(folder: str | Path, kinds: Sequence[str], *, map_location="cpu") -> dict[str, dict[str, Any]]:
    """``{kind: {"ode": Twin, "sde": Twin}}`` from ``folder/KIND-{ode,sde}.pt`` (missing ones omitted),
    built on the device ``map_location``."""
    from ..twin.checkpoint import load_twin
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"twins folder {folder} does not exist; fit twins first (`nado fit`) and pass "
                          "--twins DIR holding KIND-ode.pt and KIND-sde.pt")
    out: dict[str, dict[str, Any]] = {}
    for k in kinds:
        for v in ("ode", "sde"):
            p = folder / f"{k}-{v}.pt"
            if p.is_file():
                out.setdefault(k, {})[v] = load_twin(p, map_location=map_location)
        if k not in out:
            raise ConfigError(f"no twin for device kind {k!r} in {folder} (expected {k}-ode.pt / {k}-sde.pt)")
    return out


def twins_by_layer(twins: dict, layers: Sequence[str], variant: str) -> list | None:
    """The ``variant`` ('ode' | 'sde') twin of each layer's kind, or None if one is missing."""
    try:
        return [twins[k][variant] for k in layers]
    except KeyError:
        return None


def clients_by_layer(clients: dict, layers: Sequence[str]) -> list:
    return [clients[k] for k in layers]


def _with_test(cond, m: int):
    return cond.with_test(m) if hasattr(cond, "with_test") else cond


def _n_tests(cond) -> int:
    return len(getattr(cond, "test_sets", ())) or 1


def train_stage(cond, twins: dict, layers: Sequence[str], config: TrainConfig, variants: Sequence[str],
                out_dir: Path, *, seed: int = 0, device="auto") -> dict[str, Any]:
    """Train the twin and software variants of one condition; save them under ``out_dir``.
    Networks of twins compute on their twins' device, software references on ``device``."""
    task = as_task_data(cond.data if hasattr(cond, "data") else cond)
    res: dict[str, Any] = {}
    for v in variants:
        if v in TWIN_VARIANTS:
            kind, noise = TWIN_VARIANTS[v]
            tw = twins_by_layer(twins, layers, kind)
            if tw is None:
                continue
            cfg = replace(config, noise=noise)
            net, hist = train_network(tw, task, cfg, seed=seed)
        elif v in SOFTWARE_VARIANTS:
            cfg = config
            net, hist = train_software(task, cfg, kind=SOFTWARE_VARIANTS[v], seed=seed, device=device)
        else:
            continue
        sims = [evaluate(net, as_task_data(_with_test(cond, m)), cfg, seed=seed + 11) for m in range(_n_tests(cond))]
        save_network(net, out_dir / f"{v}.pt", meta={"variant": v, "layers": list(layers), "seed": seed,
                                                     "config": cfg.to_dict()})
        res[v] = {"sim": _mean_metrics(sims), "history": hist}
    return res


def _mean_metrics(ms: list[dict]) -> dict[str, Any]:
    """Average metric dicts over maskings (keeps the per-masking values when more than one)."""
    if len(ms) == 1:
        return ms[0]
    out: dict[str, Any] = {}
    for k, v in ms[0].items():
        if isinstance(v, dict):
            out[k] = {kk: float(np.mean([m[k][kk] for m in ms])) for kk in v}
        else:
            out[k] = float(np.mean([m[k] for m in ms]))
    out["by_masking"] = ms
    return out


def transfer_stage(cond, twins: dict, layers: Sequence[str], config: TrainConfig, variants: Sequence[str],
                   clients: list, net_dir: Path, *, seed: int = 0, device="auto") -> dict[str, Any]:
    """Transfer the saved sde/ode networks of one condition; add rc / rc1 baselines; software sim only
    (on ``device``)."""
    res: dict[str, Any] = {}
    base = None
    for v in variants:
        p = net_dir / f"{v}.pt"
        if v in TWIN_VARIANTS:
            tw = twins_by_layer(twins, layers, TWIN_VARIANTS[v][0])
            if tw is None or not p.is_file():
                continue
            net, meta = load_network(p, tw)
            cfg = TrainConfig.from_dict(meta.get("config") or {}, progress=config.progress)
            per = [transfer_metrics(net, clients, _with_test(cond, m), cfg, seed=seed + 17 + m)[0]
                   for m in range(_n_tests(cond))]
            res[v] = {"sim": _mean_metrics([r["sim"] for r in per]),
                      "transfer": _mean_metrics([r["transfer"] for r in per]),
                      "drives": per[0]["drives"], "instrument_s": float(sum(r["instrument_s"] for r in per))}
            if v == "sde" or base is None:
                base = (net, cfg)
        elif v in SOFTWARE_VARIANTS and p.is_file():
            net, meta = load_network(p, map_location=device)
            cfg = TrainConfig.from_dict(meta.get("config") or {}, progress=config.progress)
            res[v] = {"sim": _mean_metrics([evaluate(net, as_task_data(_with_test(cond, m)), cfg, seed=seed + 11)
                                            for m in range(_n_tests(cond))]),
                      "transfer": None, "software": True}
    if base is not None:
        for v, single in (("rc", False), ("rc1", True)):
            if v in variants:
                cl = clients[:1] if single else clients
                res[v] = reservoir_baseline(base[0], as_task_data(_with_test(cond, 0)), base[1],
                                            clients_by_layer=cl, seed=seed + 23, single_layer=single)
    return res


def cascade_stage(cond, twins: dict, layers: Sequence[str], config: TrainConfig, depths: Sequence[int],
                  clients: list, *, seed: int = 0) -> dict[str, Any]:
    """Direct vs cascade training through the SDE twins, after transfer, for each depth."""
    tw = twins_by_layer(twins, layers, "sde") or twins_by_layer(twins, layers, "ode")
    if tw is None:
        raise ConfigError("cascade needs a fitted twin (sde or ode) for every layer's device kind")
    return compare_cascade(tw, clients, as_task_data(cond.data if hasattr(cond, "data") else cond), config,
                           depths=depths, seed=seed)
