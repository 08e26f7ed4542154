"""Request rate limits in process (GCRA: a token bucket kept as one timestamp per bucket).

An API's `rate_limit` {"requests": R, "per_seconds": P, "burst": B, "api_requests": A} gives
each of its keys R requests per P seconds with bursts up to B (default R), and, when A is set,
all its keys together A per P seconds; APIs without one get the server's default plan.
`gateway.limits.ratelimit_redis` runs the same algorithm in Redis for several gateway processes.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float
    burst: int | None = None
    api_requests: int | None = None

    def for_api(self) -> "RateLimit | None":
        """The limit on all keys of the API together, if there is one."""
        return RateLimit(self.api_requests, self.per_seconds) if self.api_requests else None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the full quota is back
    retry_after_s: float  # until the next request is allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        """IETF RateLimit header fields, plus Retry-After when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_s)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


class InProcessRateLimiter:
    """GCRA over a dict of theoretical arrival times; stale buckets are dropped as it goes."""

    def __init__(self, clock=time.monotonic) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._next_sweep = 0.0

    def hit(self, bucket: str, limit: RateLimit) -> Decision:
        interval = limit.per_seconds / limit.requests
        with self._lock:
            now = self._clock()
            self._sweep(now)
            tat = max(self._tat.get(bucket, now), now)
            new_tat = tat + interval
            if new_tat - now > limit.per_seconds + 1e-9:
                retry = new_tat - limit.per_seconds - now
                return Decision(False, limit.requests, 0, tat - now, retry)
            self._tat[bucket] = new_tat
        remaining = int((limit.per_seconds - (new_tat - now)) / interval + 1e-9)
        return Decision(True, limit.requests, remaining, new_tat - now, 0.0)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60
        for bucket in [b for b, tat in self._tat.items() if tat <= now]:
            del self._tat[bucket]
