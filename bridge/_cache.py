"""The server's reply cache (private): replies kept for retries, bounded by count, age and bytes."""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np


class ReplyCache:
    """Reply frames by key, bounded by count, age (seconds) and total bytes.

    The server's keys are ``(peer, request id)``: one peer never sees another's entries.
    ``get(key) -> (meta, frames) | None``; ``put(key, meta, frames, extra_bytes)``; ``clock``: a
    monotonic clock in seconds (tests inject one).

    Insertion is O(1): the oldest entry goes when the count is exceeded; age and
    byte bounds are checked against the oldest entry only when it may have expired
    (``_expire_at``) or the bytes overflow.
    """

    def __init__(self, size: int, age_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.age_s, self.max_bytes, self.clock = size, age_s, max_bytes, clock
        self._d: OrderedDict[Hashable, tuple[float, Any, list, int]] = OrderedDict()
        self.nbytes = 0
        self._expire_at = math.inf   # when the oldest entry runs out of age

    def _evict(self, now: float) -> None:
        d = self._d
        while d:
            t, _, _, n = next(iter(d.values()))
            if len(d) > self.size or self.nbytes > self.max_bytes or now - t > self.age_s:
                d.popitem(last=False)
                self.nbytes -= n
            else:
                self._expire_at = t + self.age_s
                return
        self._expire_at = math.inf

    def get(self, key: Hashable) -> tuple[Any, list] | None:
        hit = self._d.get(key)
        if hit is None:
            return None
        now = self.clock()
        if now - hit[0] > self.age_s:
            self._evict(now)
            return None
        return hit[1], hit[2]

    def put(self, key: Hashable, meta: Any, frames: list, extra_bytes: int = 0) -> None:
        """Keep ``frames`` (and ``meta``, whose own ``extra_bytes`` count toward the byte bound)."""
        n = extra_bytes
        for f in frames:
            n += f.nbytes if type(f) is np.ndarray else len(f)
        if n > self.max_bytes or self.size == 0:
            return
        now = self.clock()
        d = self._d
        old = d.pop(key, None)
        if old is not None:
            self.nbytes -= old[3]
        d[key] = (now, meta, frames, n)
        self.nbytes += n
        if len(d) > self.size:
            self.nbytes -= d.popitem(last=False)[1][3]
        if self.nbytes > self.max_bytes or now >= self._expire_at or len(d) == 1:
            self._evict(now)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` has an entry (perhaps too old: :meth:`get` then answers None)."""
        return key in self._d
