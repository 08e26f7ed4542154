"""Rate limits shared by every gateway process through Redis, and the async interface they share.

`RedisRateLimiter.hit` is one EVALSHA round trip: a Lua script runs the same GCRA as
`gateway.ratelimit.InProcessRateLimiter` atomically inside Redis, on Redis' clock (so gateway
hosts with skewed clocks agree), and gives each bucket's key a TTL of its reset horizon so idle
buckets vanish. `burst` is the bucket's capacity (default `limit.requests`, as in process): up
to `burst` requests at once, refilled at `limit.requests` per `limit.per_seconds`. The
decision's `limit` (RateLimit-Limit) is that capacity, so Remaining never exceeds Limit.

If Redis fails or is slower than `timeout_s`, the request is decided by the `on_error` policy:

* "open": allowed, with Limit = Remaining = the capacity and Reset 0 (nothing is being counted);
* "closed": refused, Remaining 0, Reset = Retry-After = `cooldown_s` (when Redis is next tried).

Each failure counts in `errors_total` and logs a warning on "wasmgate.ratelimit" (at most one
per `warn_interval_s`, with the number suppressed). After a failure Redis is skipped for
`cooldown_s` (the policy decides without waiting), then one request probes it again while the
others keep the policy; the first success resumes normal limiting. Decisions made by the policy
count in `fail_open_total` / `fail_closed_total`.

`AsyncInProcessRateLimiter` puts the in-process limiter behind the same `hit` signature, and
`create_limiter` picks one of the two from the configured Redis URL. Requires Redis >= 5
(scripts that write after TIME).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Literal, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.limits.ratelimit import Decision, InProcessRateLimiter, RateLimit

log = logging.getLogger("wasmgate.ratelimit")

OnError = Literal["open", "closed"]

# KEYS[1] the bucket; ARGV interval_s, tolerance_s, cost. The stored value is the bucket's
# theoretical arrival time (TAT) in seconds since 2024-01-01 (small enough for doubles to keep
# ~10 ns), written with %.17g so it reads back exactly. EPS (TIME's resolution) absorbs
# rounding. Floats are returned as strings: Redis truncates Lua numbers to integers.
GCRA_LUA = """
local EPOCH, EPS = 1704067200, 1e-6
local interval, tolerance, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = (tonumber(t[1]) - EPOCH) + tonumber(t[2]) / 1e6
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local backlog = math.max(tat - now, 0)
local new_backlog = backlog + cost * interval
if new_backlog > tolerance + EPS then
  return {0, 0, string.format('%.17g', backlog), string.format('%.17g', new_backlog - tolerance)}
end
redis.call('SET', KEYS[1], string.format('%.17g', now + new_backlog), 'PX', math.ceil(new_backlog * 1000))
local remaining = math.floor((tolerance - new_backlog + EPS) / interval)
return {1, remaining, string.format('%.17g', new_backlog), '0'}
"""


class AsyncRateLimiter(Protocol):
    async def hit(self, bucket: str, limit: RateLimit, *, burst: int | None = None, cost: int = 1) -> Decision: ...

    async def aclose(self) -> None: ...


def _capacity(limit: RateLimit, burst: int | None, cost: int) -> int:
    capacity = limit.requests if burst is None else burst
    if capacity < 1 or not 1 <= cost <= capacity:
        raise ValueError(f"need burst >= 1 and 1 <= cost <= burst, got burst={capacity} cost={cost}")
    return capacity


class RedisRateLimiter:
    """GCRA in Redis, one EVALSHA per decision; see the module docstring for failures."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        on_error: OnError = "open",
        timeout_s: float = 0.1,
        cooldown_s: float = 1.0,
        warn_interval_s: float = 30.0,
        key_prefix: str = "wasmgate:rl:",
    ) -> None:
        if on_error not in ("open", "closed"):
            raise ValueError(f"on_error must be 'open' or 'closed', not {on_error!r}")
        self.client = client
        self.on_error = on_error
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self.warn_interval_s = warn_interval_s
        self.key_prefix = key_prefix
        self.errors_total = 0
        self.fail_open_total = 0
        self.fail_closed_total = 0
        self._script = client.register_script(GCRA_LUA)
        self._failing = False
        self._skip_until = 0.0  # while failing: decide by the policy until then
        self._last_warning = -math.inf
        self._suppressed = 0

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.1, **kwargs) -> "RedisRateLimiter":
        """A limiter with its own client: socket timeouts of `timeout_s`, one immediate retry."""
        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
        )
        return cls(client, timeout_s=timeout_s, **kwargs)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def hit(self, bucket: str, limit: RateLimit, *, burst: int | None = None, cost: int = 1) -> Decision:
        capacity = _capacity(limit, burst, cost)
        if self._failing:
            now = time.monotonic()
            if now < self._skip_until:
                return self._policy(capacity)
            self._skip_until = now + self.cooldown_s  # this request probes; the others keep the policy
        interval = limit.per_seconds / limit.requests
        try:
            async with asyncio.timeout(self.timeout_s):  # like wait_for, without a task per call
                allowed, remaining, reset_s, retry_s = await self._script(
                    keys=[self.key_prefix + bucket], args=[interval, interval * capacity, cost]
                )
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)
            return self._policy(capacity)
        if self._failing:
            self._failing = False
            log.info("rate limits: Redis is back, limiting through it again")
        return Decision(bool(allowed), capacity, int(remaining), float(reset_s), float(retry_s))

    def _policy(self, capacity: int) -> Decision:
        if self.on_error == "open":
            self.fail_open_total += 1
            return Decision(True, capacity, capacity, 0.0, 0.0)
        self.fail_closed_total += 1
        return Decision(False, capacity, 0, self.cooldown_s, self.cooldown_s)

    def _failed(self, exc: BaseException) -> None:
        self.errors_total += 1
        self._failing = True
        now = time.monotonic()
        self._skip_until = now + self.cooldown_s
        if now - self._last_warning < self.warn_interval_s:
            self._suppressed += 1
            return
        log.warning(
            "rate limits: Redis failed (%s), failing %s; retrying every %.1f s (%d similar warnings suppressed)",
            str(exc) or type(exc).__name__,
            self.on_error,
            self.cooldown_s,
            self._suppressed,
        )
        self._last_warning = now
        self._suppressed = 0


class AsyncInProcessRateLimiter:
    """The embedded default (`InProcessRateLimiter`) behind the async `hit` signature.

    `burst` maps exactly onto the in-process GCRA: a bucket of B refilled at R per P seconds is
    RateLimit(B, B * P / R) (same emission interval P / R, tolerance B of them). `cost` must be 1.
    """

    def __init__(self, limiter: InProcessRateLimiter | None = None) -> None:
        self._limiter = limiter or InProcessRateLimiter()

    async def hit(self, bucket: str, limit: RateLimit, *, burst: int | None = None, cost: int = 1) -> Decision:
        capacity = _capacity(limit, burst, cost)
        if cost != 1:
            raise ValueError("the in-process limiter only supports cost=1")
        if capacity != limit.requests:
            limit = RateLimit(capacity, limit.per_seconds * capacity / limit.requests)
        return self._limiter.hit(bucket, limit)

    async def aclose(self) -> None:
        """Nothing to release; here so both limiters are interchangeable."""


def create_limiter(
    redis_url: str | None, *, on_error: OnError = "open", timeout_s: float = 0.1, shared_path: Path | None = None
) -> AsyncRateLimiter:
    """Redis-backed limits when `redis_url` (WASMGATE_REDIS_URL) is set; else shared by the
    processes of one host in the SQLite file `shared_path`, if given; else in process."""
    if not redis_url:
        if shared_path is not None:
            from gateway.limits.ratelimit_sqlite import SqliteRateLimiter

            return SqliteRateLimiter(shared_path)
        return AsyncInProcessRateLimiter()
    return RedisRateLimiter.from_url(redis_url, on_error=on_error, timeout_s=timeout_s)
