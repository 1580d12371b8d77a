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
"""
from __future__ import annotations

import time
from dataclasses import dataclass

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
