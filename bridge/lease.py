"""Exclusive access to a rig: leases taken with ``lock``, renewed by heartbeats, freed by ``unlock``.

A lease belongs to the pair (user, client): ``user`` is the authenticated
CurveZMQ User-Id (``None`` on plain connections) and ``client`` the session
token a client sends in each request header (``client``, see
``bridge/PROTOCOL.md``). While a lease runs, drives on that rig from anyone
else are answered ``BUSY`` naming the holder and the seconds left; the holder
renews it by sending ``lock`` again before it runs out (``RigClient.lease()``
does that from a heartbeat thread). A lease that runs out frees the rig, and
the server makes the rig safe (its ``make_safe()``).

The table is touched by the server's loop thread only; checking a drive is one
dict lookup when no lease is held.

Here: :class:`LeaseTable` (the leases), :class:`LeaseOps` (the server's
``lock``/``unlock``/``status`` ops and expiry, mixed into ``RigServer``) and
:class:`Heartbeat` (the client's renewal thread behind ``RigClient.lease()``).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import protocol as P
from .errors import RigError, RigTimeout, RigUnavailable
from .worker import SAFE_OP

log = logging.getLogger("bridge.server")

MAX_LEASE_S = 3600.0


@dataclass
class Lease:
    """Who holds a rig (``holder``: a name for people), owner key, and when it runs out (monotonic s)."""

    holder: str
    owner: tuple
    expires: float
    taken: float

    def left_s(self, now: float | None = None) -> float:
        return max(0.0, self.expires - (time.monotonic() if now is None else now))


class LeaseTable:
    """Leases by rig name; see the module docstring."""

    def __init__(self, max_lease_s: float = MAX_LEASE_S) -> None:
        self.max_lease_s = float(max_lease_s)
        self.leases: dict[str, Lease] = {}

    def acquire(self, rig: str, owner: tuple, holder: str, lease_s: float) -> tuple[bool, Lease]:
        """Take or renew ``rig``'s lease for ``lease_s`` seconds; (granted, the lease now in force)."""
        now = time.monotonic()
        cur = self.leases.get(rig)
        if cur is not None and cur.expires > now and cur.owner != owner:
            return False, cur
        lease = Lease(holder=holder, owner=owner, expires=now + lease_s,
                      taken=cur.taken if cur is not None and cur.owner == owner else now)
        self.leases[rig] = lease
        return True, lease

    def release(self, rig: str, owner: tuple) -> tuple[bool, Lease | None]:
        """Free ``rig`` if ``owner`` holds it; (released, the lease that blocks it or None)."""
        cur = self.leases.get(rig)
        if cur is None or cur.expires <= time.monotonic():
            self.leases.pop(rig, None)
            return False, None
        if cur.owner != owner:
            return False, cur
        del self.leases[rig]
        return True, None

    def blocking(self, rig: str, owner: tuple) -> Lease | None:
        """The lease that keeps ``owner`` from driving ``rig`` (None: go ahead)."""
        cur = self.leases.get(rig)
        if cur is None or cur.owner == owner:
            return None
        if cur.expires <= time.monotonic():
            return None   # expired: expire() frees it and makes the rig safe
        return cur

    def expire(self) -> list[tuple[str, Lease]]:
        """Remove and return the leases that have run out."""
        if not self.leases:
            return []
        now = time.monotonic()
        gone = [(r, lease) for r, lease in self.leases.items() if lease.expires <= now]
        for r, _ in gone:
            del self.leases[r]
        return gone


class LeaseOps:
    """The ``lock``, ``unlock`` and ``status`` ops and lease expiry of :class:`bridge.server.RigServer`."""

    def status(self) -> dict[str, Any]:
        """Counters (also the ``status`` op's result).

        Server-wide: ``requests``, ``drives``, ``cache_hits``, ``errors`` (by code),
        ``cached`` replies, ``refused`` clients (CURVE). Per rig (``rigs.NAME``):
        ``holder`` (None when free) and ``lease_left_s``, ``requests`` served,
        ``drives`` executed, ``cache_hits``, ``errors`` by code, ``waiting``,
        ``users`` (drives by caller: CURVE User-Id, else ``"anonymous"``).
        """
        rigs = {}
        for n, w in self._workers.items():
            lease = self._leases.leases.get(n)
            live = lease is not None and lease.left_s() > 0
            st = self._rig_stats[n]
            rigs[n] = {"holder": lease.holder if live else None,
                       "lease_left_s": lease.left_s() if live else 0.0,
                       "requests": st["requests"], "drives": w.drives, "cache_hits": st["cache_hits"],
                       "errors": dict(self._rig_errors[n]), "waiting": w.waiting,
                       "users": dict(self._users[n])}
        return {"requests": 0, "cache_hits": 0, **self._stats,
                "drives": sum(w.drives for w in self._workers.values()),
                "errors": dict(self._errors), "cached": len(self._cache),
                "refused": self._auth.refusals if self._auth is not None else 0, "rigs": rigs}

    def _lease_op(self, envelope: list, rid: str, op: str, rig: str | None, args: dict, owner: tuple) -> None:
        if op == P.STATUS:
            st = self.status()
            if rig is not None:
                st = {**st, "rigs": {rig: st["rigs"][rig]}}
            return self._send(envelope, P.encode(P.reply_ok(rid, st)))
        if op == P.LOCK:
            holder = owner[0] or args.get("holder") or "anonymous"
            if owner[0] and args.get("holder"):
                holder = f"{owner[0]} ({args['holder']})"
            ok, lease = self._leases.acquire(rig, owner, holder, float(args["lease_s"]))
        else:
            ok, lease = self._leases.release(rig, owner)
            if lease is None:
                return self._send(envelope, P.encode(P.reply_ok(rid, {"released": ok})))
        if not ok:
            return self._error(envelope, rid, P.BUSY, f"rig '{rig}' is locked by {lease.holder} for "
                               f"{lease.left_s():.1f} s more; wait or ask them to unlock it", rig)
        log.info("rig %s locked by %s for %.3g s", rig, lease.holder, lease.left_s())
        self._send(envelope, P.encode(P.reply_ok(rid, {"holder": lease.holder, "lease_left_s": lease.left_s()})))

    def _expire_leases(self) -> None:
        """Free leases that ran out and make their rigs safe (on the rig's worker, in order)."""
        for rig, lease in self._leases.expire():
            log.warning("lease of rig %s held by %s ran out; the rig is free and made safe", rig, lease.holder)
            self._stats["leases_expired"] += 1
            worker = self._workers[rig]
            worker.waiting += 1
            rid = f"{SAFE_OP}{uuid.uuid4().hex}"
            self._pending[rid] = {"op": SAFE_OP, "rig": rig, "envelopes": []}
            worker.jobs.put((rid, SAFE_OP, {}))


class Heartbeat(threading.Thread):
    """Renews a lease every ``renew_s`` from its own socket (same session) until stopped."""

    def __init__(self, owner: Any, rig: str, lease_s: float, renew_s: float) -> None:
        from .client import RigClient
        super().__init__(name=f"lease-{rig}", daemon=True)
        self.rig, self.lease_s, self.renew_s = rig, lease_s, renew_s
        self.client = RigClient(owner.endpoint, rig, timeout_s=max(renew_s, 0.5), retries=1,
                                context=owner.context, curve_keys=owner.curve_keys, name=owner.name,
                                session=owner.session, dead_after_s=owner.dead_after_s)
        self.error: BaseException | None = None
        self.renewals = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.renew_s):
                try:
                    self.client.lock(self.lease_s)
                    self.renewals += 1
                except (RigError, RigTimeout, RigUnavailable) as exc:
                    self.error = exc
                    log.warning("lease renewal of rig %s failed: %s", self.rig, exc)
                    return
        finally:
            self.client.close()

    def stop(self) -> None:
        self._halt.set()
        if self is not threading.current_thread():
            self.join(10.0)
