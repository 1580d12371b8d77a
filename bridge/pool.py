"""``RigPool``: one rig kind on several servers, driven like one rig.

::

    pool = RigPool([("tcp://rigpc1:5555", "nra"), ("tcp://rigpc2:5555", "nra")], timeout_s=60)
    pool.describe()                          # the members' common description
    res = pool.drive(u, seed=7)              # u: (B, T, n_in) -> DriveResult, B split over members
    pool.close()

**Members** must describe themselves identically in :data:`IDENTITY_KEYS` (``kind``,
``input`` = dims/units/min/max, ``output`` = dims/units, ``step_s``); names, sources,
calibrations and the like may differ. A mismatch raises :class:`PoolMismatch` when
the pool connects. A member that does not answer at connect time is marked down
and described (and checked) when it is next tried.

**Splitting.** A batched drive of B experiments is split across the live members
in proportion to their measured speed (experiments per wall second of their last
shares, request overhead included, smoothed 50/50 with the previous value; equal at
first, so small first drives make rough estimates), the shares run concurrently (one thread per
member, each owning its own :class:`bridge.RigClient`: ZeroMQ sockets are not
thread-safe), and the results are merged in the original order. When a member
fails (timeout, lost server, rig fault) its unfinished experiments are split
across the others, and the member is marked down for ``down_s`` seconds. Input
errors (``BadInput``, ``OutOfRange``) are not member failures: they are raised.
With every member down, :class:`bridge.errors.RigUnavailable` is raised.

**Seeds (the pooled contract).** A rig draws one drive's noise from one seed, so
a batch cannot be cut into per-member drives bit-identically. The pool therefore
defines: with ``seed=S`` the B experiments are cut into fixed chunks of ``chunk``
experiments (chunk k = experiments ``k*chunk .. (k+1)*chunk - 1``), chunk k is
driven as one drive with seed :func:`chunk_seed` ``(S, k)``, and the chunks are
dealt to members whole. The result is then independent of the number of
members, their speeds and failures, and equals :func:`reference_drive` of one
member (the same rig driven chunk by chunk with those seeds) whenever the members
are copies of one device (emulators sharing a ``sample_seed``; distinct real devices
differ in their physics, so for them the contract fixes the seeds, not the values).
Each chunk is one drive: pick ``chunk`` so that a chunk's instrument time dwarfs the
request overhead. With ``seed=None`` each member drives its whole share in one
drive with fresh noise.
``reset=False`` (continuing one device's state) is refused: drive a member
directly (:meth:`RigPool.client_for`).

``instrument_s`` of a pooled result is the sum over members (instrument time
spent); :attr:`RigPool.last` holds per-member experiments and wall seconds.

**Station tables.** :func:`load_pool` builds a pool from a table
``[pools.NAME] members = [{endpoint = "tcp://...", rig = "nra"}, ...]`` with the
optional keys ``timeout_s``, ``retries``, ``chunk``, ``down_s``
(:func:`parse_pool` only checks it; :func:`parse_pools` checks every ``[pools.*]`` of a
parsed TOML file and ignores its other tables).

**Hook for locks and heartbeats** (reliability work): pass ``hooks=`` an object
with any of ``connect(member, client)`` (called in the member's thread after its
client is made: take a lock there), ``alive(member) -> bool`` (asked before each
drive; False = treat the member as down, e.g. a missed heartbeat) and
``release(member, client)`` (called in the member's thread before its client
closes). :class:`MemberHooks` is the no-op default.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import numpy as np

from .client import RigClient
from .errors import BadInput, BridgeError, OutOfRange, ProtocolError, RigUnavailable, StationError
from .pool_config import (POOL_KEYS, Member, chunk_seed, member_from, parse_pool, parse_pools,
                          reference_drive, split_counts)
from .rig import DriveResult, check_seed

__all__ = ["RigPool", "PoolMismatch", "MemberHooks", "Member", "IDENTITY_KEYS", "POOL_KEYS",
           "chunk_seed", "reference_drive", "split_counts", "parse_pool", "parse_pools", "load_pool"]

log = logging.getLogger(__name__)

#: describe() keys that must agree across members.
IDENTITY_KEYS = ("kind", "input", "output", "step_s")
#: Errors that are the caller's fault, not the member's: raised, never retried elsewhere.
_CALLER_ERRORS = (BadInput, OutOfRange, ProtocolError)


class PoolMismatch(BridgeError, ValueError):
    """Pool members describe different rigs (kind, input/output ranges or units, step)."""


class MemberHooks:
    """No-op per-member hooks (see the module docstring); subclass for locks/heartbeats."""

    def connect(self, member: Member, client: RigClient) -> None:
        pass

    def alive(self, member: Member) -> bool:
        return True

    def release(self, member: Member, client: RigClient) -> None:
        pass


class _MemberState:
    """A member's thread (owning its client), measured speed and down-until time."""

    def __init__(self, member: Member, make_client: Callable[[Member], RigClient]):
        self.member = member
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pool-{member.endpoint}")
        self._make_client = make_client
        self.client: RigClient | None = None     # touched only in the executor's thread
        self.speed: float | None = None          # experiments per wall second
        self.down_until = 0.0
        self.description: dict | None = None
        self.error: str | None = None
        self.excluded = False

    def get_client(self) -> RigClient:
        if self.client is None:
            self.client = self._make_client(self.member)
        return self.client

    def drop_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class RigPool:
    """Rigs of one kind on several servers, driven as one; see the module docstring.

    ``members``: ``(endpoint, rig)`` pairs, ``{"endpoint", "rig"}`` tables or :class:`Member`.
    ``timeout_s``: per-try timeout of a member's drive, seconds (once a member's speed is
    measured, a share expected to take longer gets three times its expected duration);
    ``connect_timeout_s``: per-try timeout of the describe at connect time.
    ``retries``: tries after the first inside each member's client (the pool itself
    moves a failed member's share to the others). ``chunk``: experiments per seeded
    drive. ``down_s``: seconds a failed member sits out.
    """

    def __init__(self, members: Iterable[Any], *, timeout_s: float = 60.0, retries: int = 0,
                 chunk: int = 16, down_s: float = 30.0, connect_timeout_s: float = 5.0,
                 name: str = "pool", context=None, hooks: MemberHooks | None = None,
                 connect: bool = True) -> None:
        parsed = [member_from(m, i) for i, m in enumerate(members)]
        if not parsed:
            raise StationError("a pool needs at least one member: members = [{endpoint = ..., rig = ...}]")
        if len(set(parsed)) != len(parsed):
            raise StationError(f"pool members repeat: {[str(m) for m in parsed]}; list each rig once")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
        if not down_s >= 0:
            raise ValueError(f"down_s must be >= 0 seconds, got {down_s}")
        self.name, self.timeout_s, self.retries = name, float(timeout_s), int(retries)
        self.chunk, self.down_s = int(chunk), float(down_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.context, self.hooks = context, hooks or MemberHooks()
        self.last: dict[str, Any] = {}
        self._lock = threading.Lock()        # one pooled drive at a time
        self._states = [_MemberState(m, self._new_client) for m in parsed]
        self._description: dict | None = None
        self._reference: Member | None = None
        if connect:
            self.connect()

    # ---- members -------------------------------------------------------------------------
    @property
    def members(self) -> list[Member]:
        return [s.member for s in self._states]

    def _new_client(self, member: Member) -> RigClient:
        client = RigClient(member.endpoint, member.rig, timeout_s=self.timeout_s, retries=self.retries,
                           context=self.context)
        self.hooks.connect(member, client)
        return client

    def connect(self) -> dict[str, Any]:
        """Describe every member (concurrently) and check they agree; return the description.

        Unreachable members are marked down; raises :class:`PoolMismatch` on a mismatch and
        :class:`RigUnavailable` when no member answers.
        """
        futures = [(s, s.executor.submit(self._describe_member, s)) for s in self._states]
        for s, f in futures:
            try:
                s.description = f.result()
            except _CALLER_ERRORS:
                raise
            except BridgeError as exc:
                if getattr(exc, "code", None) == "UNKNOWN_RIG":
                    raise RigUnavailable(f"pool '{self.name}': member {s.member}: {exc}") from None
                self._mark_down(s, exc)
        described = [s for s in self._states if s.description is not None]
        if not described:
            raise RigUnavailable(f"pool '{self.name}': no member answers ({self._errors()}); "
                                 "start their servers (nado rig serve) or fix the endpoints")
        ref = described[0]
        self._description, self._reference = ref.description, ref.member
        for s in described[1:]:
            self._check_same(s)
        return self.describe()

    def _describe_member(self, s: _MemberState) -> dict[str, Any]:
        """In the member's thread: describe it, waiting at most ``connect_timeout_s`` per try."""
        client = s.get_client()
        client.timeout_s = min(self.timeout_s, self.connect_timeout_s)
        try:
            return client.describe()
        finally:
            client.timeout_s = self.timeout_s

    def _check_same(self, s: _MemberState) -> None:
        ref = self._description
        diff = [k for k in IDENTITY_KEYS if ref.get(k) != s.description.get(k)]
        if diff:
            detail = "; ".join(f"{k}: {ref.get(k)!r} vs {s.description.get(k)!r}" for k in diff)
            raise PoolMismatch(f"pool '{self.name}': member {s.member} differs from {self._reference} in "
                               f"{', '.join(diff)} ({detail}); a pool holds rigs of one kind with the "
                               "same input range and units: remove the odd member")

    def describe(self) -> dict[str, Any]:
        """The members' common description, named after the pool, with ``members`` listed."""
        if self._description is None:
            self.connect()
        d = dict(self._description)
        d.update(name=self.name, source="pool://" + ",".join(str(m) for m in self.members),
                 members=[{"endpoint": m.endpoint, "rig": m.rig} for m in self.members])
        return d

    def client_for(self, i: int) -> RigClient:
        """A fresh client of member ``i`` (for direct use, e.g. ``reset=False``); close it yourself."""
        m = self._states[i].member
        return RigClient(m.endpoint, m.rig, timeout_s=self.timeout_s, retries=self.retries, context=self.context)

    def status(self) -> list[dict[str, Any]]:
        """Per member: endpoint, rig, speed (experiments/s or None), down (bool), last error."""
        now = time.monotonic()
        return [{"endpoint": s.member.endpoint, "rig": s.member.rig, "speed": s.speed,
                 "down": s.down_until > now, "error": s.error} for s in self._states]

    def _mark_down(self, s: _MemberState, exc: BaseException) -> None:
        s.down_until = time.monotonic() + self.down_s
        s.error = f"{type(exc).__name__}: {exc}"
        s.executor.submit(s.drop_client)   # a fresh socket next time
        log.warning("pool %s: member %s down for %g s: %s", self.name, s.member, self.down_s, s.error)

    def _errors(self) -> str:
        return "; ".join(f"{s.member}: {s.error}" for s in self._states if s.error) or "no errors recorded"

    def _live(self) -> list[_MemberState]:
        now = time.monotonic()
        return [s for s in self._states
                if not s.excluded and s.down_until <= now and self.hooks.alive(s.member)]

    # ---- drive ---------------------------------------------------------------------------
    def drive(self, inputs: Any, *, reset: bool = True, seed: int | None = None) -> DriveResult:
        """Drive ``inputs`` ``(B, T, n_in)`` across the members; outputs ``(B, T, n_out)`` in order.

        ``seed=None``: fresh noise, one drive per member share. ``seed=S``: the chunked
        contract of the module docstring (equal to :func:`reference_drive`).
        """
        if reset is not True:
            raise BadInput("a pool drives independent experiments; reset=False continues one "
                           "device's state: drive one member (pool.client_for(i)) instead")
        x = np.asarray(inputs)
        if x.dtype.kind not in "fiu" or x.ndim != 3 or x.shape[0] == 0:
            raise BadInput(f"inputs must be a numeric (B, T, n_in) array with B >= 1, got "
                           f"{x.dtype} {x.shape}")
        seed = check_seed(seed)
        if self._description is None:
            self.connect()
        B = x.shape[0]
        if seed is None:
            units = [(np.arange(B), None)]
        else:
            units = [(np.arange(a, min(a + self.chunk, B)), chunk_seed(seed, k))
                     for k, a in enumerate(range(0, B, self.chunk))]
        with self._lock:
            return self._drive_units(x, units, splittable=seed is None)

    def _drive_units(self, x: np.ndarray, pending: list, *, splittable: bool) -> DriveResult:
        B = x.shape[0]
        outputs: np.ndarray | None = None
        initial: np.ndarray | None = None
        done = np.zeros(B, bool)
        instrument_s, per_member, rounds = 0.0, {}, 0
        t0 = time.perf_counter()
        while pending:
            live = self._live()
            if not live:
                raise RigUnavailable(f"pool '{self.name}': every member is down with "
                                     f"{int((~done).sum())} of {B} experiments left ({self._errors()}); "
                                     "restart the servers or wait down_s and retry")
            rounds += 1
            shares = self._assign(pending, live, splittable)
            futures = [(s, share, s.executor.submit(self._run_share, s, x, share))
                       for s, share in shares if share]
            pending = []
            for s, share, f in futures:
                results, failed, exc, wall = f.result()
                n = 0
                for idx, r in results:
                    if outputs is None:
                        outputs = np.empty((B,) + r.outputs.shape[1:], np.float64)
                        initial = np.empty((B,) + r.initial.shape[1:], np.float64)
                    outputs[idx], initial[idx] = r.outputs, r.initial
                    done[idx] = True
                    instrument_s += float(r.instrument_s)
                    n += len(idx)
                rec = per_member.setdefault(str(s.member), {"experiments": 0, "wall_s": 0.0, "failed": 0})
                rec["experiments"] += n
                rec["wall_s"] += wall
                if n and wall > 0:
                    self._update_speed(s, n / wall)
                if exc is not None:
                    if isinstance(exc, _CALLER_ERRORS):
                        raise exc
                    rec["failed"] += sum(len(i) for i, _ in failed)
                    self._mark_down(s, exc)
                    if isinstance(exc, PoolMismatch):
                        s.excluded = True   # a different rig: never drive it in this pool
                    pending.extend(failed)
            if splittable and len(pending) > 1:
                pending = [(np.concatenate([i for i, _ in pending]), None)]
        self.last = {"members": per_member, "rounds": rounds, "wall_s": time.perf_counter() - t0}
        return DriveResult(outputs=outputs, initial=initial, instrument_s=instrument_s)

    def _assign(self, pending: list, live: list[_MemberState], splittable: bool) -> list:
        """Pending units dealt to live members in proportion to their speed: [(state, units)]."""
        known = [s.speed for s in live if s.speed]
        default = float(np.mean(known)) if known else 1.0
        weights = [s.speed or default for s in live]
        if splittable:   # one unit of experiments, seed None: cut it by experiment count
            (idx, _), = pending
            counts = split_counts(len(idx), weights)
            bounds = np.cumsum([0] + counts)
            return [(s, [(idx[a:b], None)] if b > a else []) for s, a, b in zip(live, bounds[:-1], bounds[1:])]
        counts = split_counts(len(pending), weights)   # whole chunks
        bounds = np.cumsum([0] + counts)
        return [(s, pending[a:b]) for s, a, b in zip(live, bounds[:-1], bounds[1:])]

    def _update_speed(self, s: _MemberState, measured: float) -> None:
        s.speed = measured if s.speed is None else 0.5 * s.speed + 0.5 * measured

    def _run_share(self, s: _MemberState, x: np.ndarray, units: list):
        """In the member's thread: drive each unit; stop at the first failure.

        Returns ``(results [(idx, DriveResult)], unfinished units, exception or None, wall_s)``.
        """
        results, t0 = [], time.perf_counter()
        for j, (idx, seed) in enumerate(units):
            try:
                client = s.get_client()
                if s.description is None:   # down at connect time: check it now
                    s.description = client.describe()
                    self._check_same(s)
                if s.speed:
                    client.timeout_s = max(self.timeout_s, 3.0 * len(idx) / s.speed)
                r = client.drive(x[idx], reset=True, seed=seed)
            except Exception as exc:  # noqa: BLE001 - reported to the pool, which decides
                return results, units[j:], exc, time.perf_counter() - t0
            results.append((idx, r))
        return results, [], None, time.perf_counter() - t0

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Release and close every member's client and stop their threads. Idempotent."""
        for s in self._states:
            def _close(s=s):
                if s.client is not None:
                    try:
                        self.hooks.release(s.member, s.client)
                    finally:
                        s.drop_client()
            try:
                s.executor.submit(_close).result()
            except RuntimeError:   # already shut down
                pass
            s.executor.shutdown(wait=True)

    def __enter__(self) -> "RigPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RigPool({self.name!r}, {[str(m) for m in self.members]})"


def load_pool(table: dict[str, Any], name: str = "pool", **overrides: Any) -> RigPool:
    """A connected :class:`RigPool` from a ``[pools.NAME]`` table (``overrides``: RigPool kwargs)."""
    kw = parse_pool(table, name)
    kw.update(overrides)
    return RigPool(kw.pop("members"), **kw)
