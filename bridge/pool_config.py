"""The plain parts of :mod:`bridge.pool`: members, ``[pools.NAME]`` tables, the seed contract, the split.

- :class:`Member`: a server endpoint and a rig name there.
- :func:`parse_pool` / :func:`parse_pools`: check ``[pools.NAME]`` tables
  (``members = [{endpoint = "tcp://...", rig = "..."}, ...]`` and the optional
  ``timeout_s``, ``retries``, ``chunk``, ``down_s``); errors are :class:`StationError`
  naming the key.
- :func:`chunk_seed` and :func:`reference_drive`: the pooled seed contract (chunk k of
  a drive with seed S is driven with ``chunk_seed(S, k)``).
- :func:`split_counts`: n items in proportion to weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import StationError
from .rig import DriveResult

POOL_KEYS = ("members", "timeout_s", "retries", "chunk", "down_s")


@dataclass(frozen=True)
class Member:
    """One pool member: a server ``endpoint`` and the ``rig`` name there (None = its only rig)."""

    endpoint: str
    rig: str | None = None

    def __str__(self) -> str:
        return f"{self.endpoint}/{self.rig or '?'}"


def chunk_seed(seed: int, k: int) -> int:
    """The seed of chunk ``k`` of a pooled drive with ``seed``: a uint32 from SeedSequence([seed, k])."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def reference_drive(rig: Any, inputs: Any, *, seed: int, chunk: int, reset: bool = True) -> DriveResult:
    """What a pooled drive with ``seed`` returns, computed on one ``rig`` (anything with ``drive``).

    Drives ``inputs`` ``(B, T, n_in)`` chunk by chunk (``chunk`` experiments each) with
    :func:`chunk_seed` ``(seed, k)`` and concatenates: the pool's contract.
    """
    x = np.asarray(inputs)
    outs, inits, t = [], [], 0.0
    for k, a in enumerate(range(0, x.shape[0], chunk)):
        r = rig.drive(x[a:a + chunk], reset=reset, seed=chunk_seed(seed, k))
        outs.append(np.asarray(r.outputs))
        inits.append(np.asarray(r.initial))
        t += float(r.instrument_s)
    return DriveResult(outputs=np.concatenate(outs), initial=np.concatenate(inits), instrument_s=t)


def split_counts(n: int, weights: Sequence[float]) -> list[int]:
    """``n`` items split in proportion to ``weights`` (largest remainder; sums to n)."""
    w = np.asarray(weights, dtype=float)
    if n < 0 or len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"cannot split {n} items by weights {list(weights)}")
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    return counts.tolist()


def member_from(m: Any, i: int) -> Member:
    if isinstance(m, Member):
        return m
    if isinstance(m, dict):
        unknown = sorted(set(m) - {"endpoint", "rig"})
        if unknown or "endpoint" not in m:
            raise StationError(f"members[{i}] must be {{endpoint = \"tcp://host:port\", rig = \"name\"}}, "
                               f"got keys {sorted(m)}")
        ep, rig = m["endpoint"], m.get("rig")
    elif isinstance(m, (tuple, list)) and len(m) == 2:
        ep, rig = m
    else:
        raise StationError(f"members[{i}] must be (endpoint, rig) or a table, got {m!r}")
    if not isinstance(ep, str) or "://" not in ep:
        raise StationError(f"members[{i}].endpoint must look like tcp://HOST:PORT, got {ep!r}")
    if rig is not None and not isinstance(rig, str):
        raise StationError(f"members[{i}].rig must be a rig name (string), got {rig!r}")
    return Member(ep, rig)


def parse_pool(table: dict[str, Any], name: str = "pool") -> dict[str, Any]:
    """Check a ``[pools.NAME]`` table; return RigPool keyword arguments (with ``members``)."""
    where = f"pools.{name}"
    if not isinstance(table, dict):
        raise StationError(f"{where} must be a table with members = [{{endpoint = ..., rig = ...}}, ...]")
    unknown = sorted(set(table) - set(POOL_KEYS))
    if unknown:
        raise StationError(f"{where}.{unknown[0]}: unknown key; a pool takes {', '.join(POOL_KEYS)}")
    members = table.get("members")
    if not isinstance(members, list) or not members:
        raise StationError(f"{where}.members must list at least one {{endpoint = \"tcp://...\", rig = \"...\"}}")
    try:
        parsed = [member_from(m, i) for i, m in enumerate(members)]
    except StationError as exc:
        raise StationError(f"{where}.{exc}") from None   # member_from names members[i]
    kw: dict[str, Any] = {"members": parsed, "name": name}
    for key, kind in (("timeout_s", float), ("down_s", float), ("retries", int), ("chunk", int)):
        if key in table:
            v = table[key]
            ok = (not isinstance(v, bool) and isinstance(v, (int, float) if kind is float else int)
                  and v >= (1 if key == "chunk" else 0) and (key != "timeout_s" or v > 0))
            if not ok:
                raise StationError(f"{where}.{key} must be a {'number > 0' if key == 'timeout_s' else 'non-negative ' + kind.__name__}"
                                   f"{' >= 1' if key == 'chunk' else ''}, got {v!r}")
            kw[key] = kind(v)
    return kw


def parse_pools(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ``[pools.NAME]`` table of parsed TOML ``data`` (a station or scenario file), checked.

    Returns ``{NAME: RigPool keyword arguments}``; other top-level tables are ignored.
    """
    pools = data.get("pools", {})
    if not isinstance(pools, dict):
        raise StationError("pools must be tables: [pools.NAME] members = [{endpoint = ..., rig = ...}]")
    return {name: parse_pool(table, name) for name, table in pools.items()}
