"""Exclusive access to a rig: leases taken with ``lock``, renewed by heartbeats, freed by ``unlock``.

A lease belongs to the pair (peer, client): ``peer`` is the authenticated
CurveZMQ key of the caller, or on plain connections the peer named by its
ZeroMQ routing id (see ``bridge/PROTOCOL.md``, "Peers"), and ``client`` the
session token a client sends in each request header (``None`` when it sends
none). So a token is bound to the peer that took the lease, and a lease taken
without a token belongs to that one peer only. While a lease runs, drives on that rig from anyone
else are answered ``BUSY`` naming the holder and the seconds left; the holder
renews it by sending ``lock`` again before it runs out (``RigClient.lease()``
does that from a heartbeat thread). A lease that runs out frees the rig, and
the server makes the rig safe (its ``make_safe()``).

The table is changed by the server's loop thread only; rig workers read it
(:meth:`LeaseTable.blocking`) when they execute a drive, so a drive queued before
a lock was granted is refused if it comes up while the lease runs. ``clock``: a
monotonic clock in seconds (tests inject one). The server's ``lock``/``unlock``
ops are in :class:`bridge.server.RigServer`; the client's renewal thread is
:class:`bridge.client.Heartbeat`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

MAX_LEASE_S = 3600.0


@dataclass
class Lease:
    """Who holds a rig (``holder``: a name for people), owner key, and when it runs out (monotonic s)."""

    holder: str
    owner: tuple
    expires: float
    taken: float

    def left_s(self, now: float) -> float:
        return max(0.0, self.expires - now)


class LeaseTable:
    """Leases by rig name; see the module docstring."""

    def __init__(self, max_lease_s: float = MAX_LEASE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_lease_s = float(max_lease_s)
        self.clock = clock
        self.leases: dict[str, Lease] = {}

    def left_s(self, lease: Lease) -> float:
        """Seconds ``lease`` has left now."""
        return lease.left_s(self.clock())

    def acquire(self, rig: str, owner: tuple, holder: str, lease_s: float) -> tuple[bool, Lease]:
        """Take or renew ``rig``'s lease for ``lease_s`` seconds; (granted, the lease now in force)."""
        now = self.clock()
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
        if cur is None or cur.expires <= self.clock():
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
        if cur.expires <= self.clock():
            return None   # expired: expire() frees it and makes the rig safe
        return cur

    def expire(self) -> list[tuple[str, Lease]]:
        """Remove and return the leases that have run out."""
        if not self.leases:
            return []
        now = self.clock()
        gone = [(r, lease) for r, lease in self.leases.items() if lease.expires <= now]
        for r, _ in gone:
            del self.leases[r]
        return gone
