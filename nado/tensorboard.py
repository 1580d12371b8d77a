"""TensorBoard event files of a run (needs ``pip install 'nado[tensorboard]'``).

``nado run`` calls :func:`write_run_events` after its report when ``tensorboard`` is
installed and the scenario does not say ``[run] tensorboard = false``. The event file
goes into the run folder itself, so ``tensorboard --logdir runs/`` shows every run
and every sweep trial (``runs/SWEEP/trial-*``) as one TensorBoard run, side by side.
Writing again into a folder replaces its earlier event files. Tags:

- ``twin/KIND/ode/train_loss``, ``.../val_loss`` per epoch; ``twin/KIND/sde/warm_loss``,
  ``critic_loss``, ``gen_loss`` per iteration and ``twin/KIND/sde/val/w1``,
  ``.../val/std_ratio`` at each validation (step = iteration): the twin fits;
- ``train/CONDITION/VARIANT/loss``, ``.../val``, ``.../lr`` per epoch (regression:
  ``VARIANT-LDEPTH``; cascade learning: ``.../layerI/loss``): the network training curves;
- ``metrics/CONDITION/VARIANT/sim/METRIC`` and ``.../transfer/METRIC`` (accuracy, mse,
  nmse, ...), ``metrics/twin/KIND/ode|sde/METRIC``, ``metrics/rig/NAME/snr``,
  ``metrics/instrument_s``, ``metrics/wall_s``: the final numbers (step 0);
- ``figures/NAME``: the report's figures; ``report``: ``report.md`` as text.

:class:`EventWriter` is the small writer underneath (torch's ``SummaryWriter``, which
writes through the ``tensorboard`` package).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

EVENT_GLOB = "events.out.tfevents.*"


def available() -> bool:
    """Whether the ``tensorboard`` package (which torch's writer needs) is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


class EventWriter:
    """Scalars, curves, images and text into one event file under ``logdir``."""

    def __init__(self, logdir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.logdir = Path(logdir)
        self._w = SummaryWriter(log_dir=str(self.logdir))
        self.tags: set[str] = set()

    def scalar(self, tag: str, value: Any, step: int = 0) -> None:
        """One number (non-numbers and NaN/inf are skipped)."""
        f = _number(value)
        if f is not None:
            self._w.add_scalar(tag, f, int(step))
            self.tags.add(tag)

    def curve(self, tag: str, values: Iterable[Any], steps: Iterable[int] | None = None) -> None:
        """A sequence of numbers at ``steps`` (default 0, 1, 2, ...)."""
        values = list(values)
        steps = list(steps) if steps is not None else list(range(len(values)))
        for s, v in zip(steps, values):
            self.scalar(tag, v, s)

    def image_file(self, tag: str, path: str | Path) -> None:
        """A PNG file as an image (H, W, C)."""
        import matplotlib.image as mpimg
        img = np.asarray(mpimg.imread(str(path)))
        if img.ndim == 2:
            img = img[:, :, None]
        self._w.add_image(tag, img[:, :, :3] if img.shape[2] >= 3 else img, 0, dataformats="HWC")
        self.tags.add(tag)

    def text(self, tag: str, text: str) -> None:
        self._w.add_text(tag, text, 0)
        self.tags.add(tag)

    def close(self) -> None:
        self._w.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def history_curves(w: EventWriter, prefix: str, hist: Any) -> None:
    """Every per-epoch/iteration list of numbers in a training history dict, as curves.

    ``epoch`` (if present and as long) gives the steps; a list of dicts with ``iter``
    (the SDE fit's validations) gives one curve per numeric key; ``histories`` (cascade
    learning, one history per layer) goes under ``PREFIX/layerI``.
    """
    if not isinstance(hist, dict):
        return
    epochs = hist.get("epoch") if isinstance(hist.get("epoch"), list) else None
    for key, v in hist.items():
        if key == "epoch" or not isinstance(v, list) or not v:
            continue
        if key == "histories":
            for i, h in enumerate(v):
                history_curves(w, f"{prefix}/layer{i}", h)
        elif all(isinstance(x, dict) for x in v):
            steps = [int(x.get("iter", i)) for i, x in enumerate(v)]
            for k in sorted({k for x in v for k in x if k != "iter"}):
                w.curve(f"{prefix}/{key}/{k}", [x.get(k) for x in v], steps)
        elif all(_number(x) is not None or x is None for x in v):
            steps = epochs if epochs is not None and len(epochs) == len(v) else None
            w.curve(f"{prefix}/{key}", v, steps)


def _metrics(w: EventWriter, prefix: str, table: Any) -> None:
    if isinstance(table, dict):
        for k, v in table.items():
            w.scalar(f"{prefix}/{k}", v)


def write_run_events(run_dir: str | Path, results: dict[str, Any],
                     twin_histories: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write the run's event file into ``run_dir`` (see the module docstring); returns ``run_dir``.

    ``results``: the run's results dict (with ``files`` from the report);
    ``twin_histories``: ``{kind: {"ode": history, "sde": history}}`` of the twin fits.
    """
    run_dir = Path(run_dir)
    for old in run_dir.glob(EVENT_GLOB):
        old.unlink()
    with EventWriter(run_dir) as w:
        for kind, hists in sorted((twin_histories or {}).items()):
            for twin_kind, hist in sorted(hists.items()):
                history_curves(w, f"twin/{kind}/{twin_kind}", hist)
        for cond, entry in sorted((results.get("conditions") or {}).items()):
            tables = dict((entry.get("networks") or {}).items())
            for depth, nets in sorted((entry.get("by_depth") or {}).items()):
                tables.update({f"{v}-{depth}": n for v, n in nets.items()})
            for variant, net in sorted(tables.items()):
                if not isinstance(net, dict):
                    continue
                history_curves(w, f"train/{cond}/{variant}", net.get("history"))
                history_curves(w, f"train/{cond}/{variant}", {"histories": net["histories"]}
                               if isinstance(net.get("histories"), list) else None)
                for col in ("sim", "transfer"):
                    _metrics(w, f"metrics/{cond}/{variant}/{col}", net.get(col))
        for kind, m in sorted(((results.get("twins") or {}).get("by_kind") or {}).items()):
            for twin_kind in ("ode", "sde"):
                _metrics(w, f"metrics/twin/{kind}/{twin_kind}", m.get(twin_kind))
        for name, rig in sorted((results.get("rigs") or {}).items()):
            w.scalar(f"metrics/rig/{name}/snr", rig.get("snr"))
        w.scalar("metrics/instrument_s", (results.get("instrument_s") or {}).get("total"))
        w.scalar("metrics/wall_s", (results.get("timing") or {}).get("total"))
        files = results.get("files") or {}
        for name, path in sorted(files.items()):
            if str(path).endswith(".png") and Path(path).is_file():
                w.image_file(f"figures/{name}", path)
        report = files.get("report")
        if report and Path(report).is_file():
            w.text("report", Path(report).read_text(encoding="utf-8"))
    return run_dir
