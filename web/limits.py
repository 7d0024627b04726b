"""Rate limits kept in a web process's memory: token buckets per key, bounded in size."""

from __future__ import annotations

import time
from collections import OrderedDict


def _now() -> float:
    """The limiters' clock (a function of its own, so a test can hold it still)."""
    return time.monotonic()


class RateLimiter:
    """A token bucket per key (a visitor, an address, an inbox): `burst` at once, then one
    more every `refill_seconds`. Memory is bounded: the least recently seen keys are
    forgotten first (they would be full again anyway)."""

    def __init__(self, burst: int, refill_seconds: float, size: int = 50_000) -> None:
        self._burst = burst
        self._refill = refill_seconds
        self._size = size
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def refill_seconds(self) -> float:
        """How long one token takes to come back (what Retry-After says)."""
        return self._refill

    def allow(self, key: str) -> bool:
        """Take one token from the key's bucket; False when it is empty."""
        now = _now()
        tokens, last = self._buckets.pop(key, (float(self._burst), now))
        tokens = min(self._burst, tokens + (now - last) / self._refill)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > self._size:
            self._buckets.popitem(last=False)
        return allowed
