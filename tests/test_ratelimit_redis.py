"""RedisRateLimiter against a real redis-server (started here on a free port, no fakes).

Atomicity under concurrency, headers, burst, cost, key TTLs, parity with the in-process GCRA,
and outages: Redis stopped or hung mid-load never makes a request wait longer than the timeout,
the on_error policy applies, warnings are rate-limited, counters move, and limits resume by
themselves when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.limits.ratelimit import Decision, RateLimit
from gateway.limits.ratelimit_redis import AsyncInProcessRateLimiter, RedisRateLimiter, create_limiter
from redis_server import RedisServer

pytestmark = pytest.mark.anyio

TIMEOUT_S = 0.1
COOLDOWN_S = 0.3
SLACK_S = 0.25  # scheduling slack on a busy machine, on top of the timeout


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def outage_server() -> Iterator[RedisServer]:
    """A server of the test's own, to stop, pause and restart."""
    with RedisServer() as server:
        yield server


def new_limiter(server: RedisServer, **kwargs) -> RedisRateLimiter:
    kwargs.setdefault("timeout_s", 2.0)  # generous unless testing outages: the machine is shared
    kwargs.setdefault("key_prefix", f"test:{uuid.uuid4().hex}:")
    return RedisRateLimiter.from_url(server.url, **kwargs)


@pytest.fixture
async def limiter(redis_server: RedisServer) -> AsyncIterator[RedisRateLimiter]:
    limiter = new_limiter(redis_server)
    yield limiter
    await limiter.aclose()


async def test_concurrent_hits_across_clients_are_atomic(
    redis_server: RedisServer, limiter: RedisRateLimiter
) -> None:
    other = new_limiter(redis_server, key_prefix=limiter.key_prefix)  # its own connection pool
    try:
        limit = RateLimit(10, 60)
        decisions = await asyncio.gather(*(lim.hit("shared", limit) for lim in [limiter, other] * 25))
    finally:
        await other.aclose()
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert sorted(d.remaining for d in allowed) == list(range(10))
    assert all(d.remaining == 0 and d.retry_after_s > 0 for d in decisions if not d.allowed)


async def test_headers(limiter: RedisRateLimiter) -> None:
    limit = RateLimit(10, 60)  # one request every 6 s
    first = await limiter.hit("k", limit)
    assert first.headers() == {"RateLimit-Limit": "10", "RateLimit-Remaining": "9", "RateLimit-Reset": "6"}
    for _ in range(9):
        last = await limiter.hit("k", limit)
    assert last.headers() == {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "60"}
    refused = await limiter.hit("k", limit)
    assert refused.headers() == {
        "RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "60", "Retry-After": "6",
    }


async def test_retry_after_is_when_the_next_request_passes(limiter: RedisRateLimiter) -> None:
    limit = RateLimit(2, 0.4)  # one every 0.2 s
    assert [(await limiter.hit("k", limit)).allowed for _ in range(3)] == [True, True, False]
    refused = await limiter.hit("k", limit)
    assert 0.1 < refused.retry_after_s <= 0.2
    await asyncio.sleep(refused.retry_after_s + 0.01)
    assert (await limiter.hit("k", limit)).allowed


async def test_burst_sets_the_capacity(limiter: RedisRateLimiter) -> None:
    small = [await limiter.hit("small", RateLimit(10, 10), burst=3) for _ in range(4)]
    assert [(d.allowed, d.remaining) for d in small] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert {d.limit for d in small} == {3}
    assert 0.9 < small[-1].retry_after_s <= 1.0  # refilled at one per second, not three
    large = [await limiter.hit("large", RateLimit(2, 10), burst=5) for _ in range(6)]
    assert [d.allowed for d in large] == [True] * 5 + [False]
    assert 4.9 < large[-1].retry_after_s <= 5.0


async def test_cost(limiter: RedisRateLimiter) -> None:
    limit = RateLimit(10, 10)
    assert [(await limiter.hit("k", limit, cost=4)).remaining for _ in range(2)] == [6, 2]
    refused = await limiter.hit("k", limit, cost=4)
    assert not refused.allowed and 1.9 < refused.retry_after_s <= 2.0
    assert (await limiter.hit("k", limit, cost=2)).allowed
    for kwargs in ({"cost": 0}, {"cost": 11}, {"burst": 0}, {"burst": 2, "cost": 3}):
        with pytest.raises(ValueError):
            await limiter.hit("k", limit, **kwargs)


async def test_keys_expire_with_the_bucket(limiter: RedisRateLimiter) -> None:
    await limiter.hit("long", RateLimit(5, 10))  # 2 s booked
    assert 1900 < await limiter.client.pttl(limiter.key_prefix + "long") <= 2000
    await limiter.hit("short", RateLimit(1, 0.1))
    assert await limiter.client.exists(limiter.key_prefix + "short")
    await asyncio.sleep(0.25)
    assert not await limiter.client.exists(limiter.key_prefix + "short")


@pytest.mark.parametrize("burst", [None, 2])
async def test_parity_with_in_process(limiter: RedisRateLimiter, burst: int | None) -> None:
    """The same hits, paced so that no decision sits near a boundary (>= 0.125 s away)."""
    local = AsyncInProcessRateLimiter()
    limit = RateLimit(4, 1.0)  # one every 0.25 s
    pairs: list[tuple[Decision, Decision]] = []
    for pause, hits in [(0, 6), (0.375, 2), (0.625, 3), (1.125, 5)]:
        await asyncio.sleep(pause)
        for _ in range(hits):
            pairs.append((await limiter.hit("k", limit, burst=burst), await local.hit("k", limit, burst=burst)))
    assert any(not shared.allowed for shared, _ in pairs) and any(shared.allowed for shared, _ in pairs)
    for shared, own in pairs:
        assert (shared.allowed, shared.limit, shared.remaining) == (own.allowed, own.limit, own.remaining)
        assert shared.reset_s == pytest.approx(own.reset_s, abs=0.05)
        assert shared.retry_after_s == pytest.approx(own.retry_after_s, abs=0.05)


async def test_create_limiter(redis_server: RedisServer) -> None:
    assert isinstance(create_limiter(None), AsyncInProcessRateLimiter)
    limiter = create_limiter(redis_server.url, on_error="closed", timeout_s=0.2)
    assert isinstance(limiter, RedisRateLimiter) and (limiter.on_error, limiter.timeout_s) == ("closed", 0.2)
    assert (await limiter.hit(f"k-{uuid.uuid4().hex}", RateLimit(3, 1))).remaining == 2
    await limiter.aclose()


class Load:
    """Workers hitting their own roomy buckets back to back, each decision timed."""

    def __init__(self, limiter: RedisRateLimiter, workers: int = 5) -> None:
        self.limiter = limiter
        self.results: list[tuple[float, float, Decision]] = []  # start, duration, decision
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._worker(f"load-{i}")) for i in range(workers)]

    async def _worker(self, bucket: str) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            decision = await self.limiter.hit(bucket, RateLimit(100_000, 1))
            self.results.append((start, time.monotonic() - start, decision))
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def between(self, begin: float, end: float) -> list[Decision]:
        return [d for start, _, d in self.results if begin <= start < end]


def policy_decision(decision: Decision, on_error: str) -> bool:
    if on_error == "open":
        return decision.allowed and decision.remaining == decision.limit
    return not decision.allowed and decision.headers()["Retry-After"] == "1"


def ratelimit_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wasmgate.ratelimit" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("on_error", ["open", "closed"])
async def test_redis_stopped_mid_load(
    outage_server: RedisServer, on_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wasmgate.ratelimit")
    limiter = new_limiter(outage_server, on_error=on_error, timeout_s=TIMEOUT_S, cooldown_s=COOLDOWN_S)
    load = Load(limiter)
    await asyncio.sleep(0.3)
    stopping = time.monotonic()
    outage_server.stop()
    down = time.monotonic()
    await asyncio.sleep(1.0)
    up = time.monotonic()
    outage_server.start()
    await asyncio.sleep(COOLDOWN_S + 0.3)
    await load.stop()

    assert max(duration for _, duration, _ in load.results) < TIMEOUT_S + SLACK_S
    # Before: decisions that finished before Redis began to stop (one in flight may fail).
    before = [d for start, duration, d in load.results if start + duration < stopping]
    during = load.between(down, up)
    after = load.between(up + COOLDOWN_S, time.monotonic())
    assert before and during and after
    assert not any(policy_decision(d, on_error) for d in before)
    assert all(policy_decision(d, on_error) for d in during)
    assert after[-1].allowed and after[-1].remaining < after[-1].limit  # counted in Redis again
    policy_total = limiter.fail_open_total if on_error == "open" else limiter.fail_closed_total
    assert policy_total == sum(policy_decision(d, on_error) for _, _, d in load.results)
    assert 1 <= limiter.errors_total < policy_total / 4  # the circuit breaker spares Redis
    assert (limiter.fail_closed_total if on_error == "open" else limiter.fail_open_total) == 0
    warnings = ratelimit_warnings(caplog)
    assert len(warnings) == 1 and f"failing {on_error}" in warnings[0].getMessage()
    assert any("Redis is back" in r.getMessage() for r in caplog.records)

    limit = RateLimit(3, 60)  # the same limiter enforces limits again
    assert [(await limiter.hit("after", limit)).allowed for _ in range(4)] == [True, True, True, False]
    await limiter.aclose()


async def test_hung_redis_costs_one_timeout_then_the_breaker_answers(outage_server: RedisServer) -> None:
    limiter = new_limiter(outage_server, timeout_s=TIMEOUT_S, cooldown_s=COOLDOWN_S)
    limit = RateLimit(5, 60)
    assert (await limiter.hit("warm", limit)).remaining == 4
    outage_server.pause()  # connections still accepted, nothing answered
    try:
        start = time.monotonic()
        first_wave = await asyncio.gather(*(limiter.hit(f"k{i}", limit) for i in range(20)))
        assert time.monotonic() - start < TIMEOUT_S + SLACK_S
        assert all(d.allowed and d.remaining == 5 for d in first_wave)
        errors = limiter.errors_total
        assert 1 <= errors <= 20

        start = time.monotonic()
        for _ in range(100):
            assert (await limiter.hit("k", limit)).allowed
        assert time.monotonic() - start < TIMEOUT_S  # not one of them paid the timeout again
        assert (limiter.errors_total, limiter.fail_open_total) == (errors, 120)

        await asyncio.sleep(COOLDOWN_S)
        start = time.monotonic()
        await limiter.hit("k", limit)  # the probe: Redis is still hung
        assert time.monotonic() - start < TIMEOUT_S + SLACK_S and limiter.errors_total == errors + 1
    finally:
        outage_server.resume()
    await asyncio.sleep(COOLDOWN_S)
    assert (await limiter.hit("fresh", limit)).remaining == 4
    await limiter.aclose()


async def test_warnings_are_rate_limited(outage_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wasmgate.ratelimit")
    limiter = new_limiter(outage_server, on_error="closed", timeout_s=TIMEOUT_S, cooldown_s=0, warn_interval_s=0.2)
    outage_server.stop()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        assert not (await limiter.hit("k", RateLimit(5, 1))).allowed
        await asyncio.sleep(0.001)
    warnings = [r.getMessage() for r in ratelimit_warnings(caplog)]
    assert 2 <= len(warnings) <= 3 < limiter.errors_total == limiter.fail_closed_total
    assert "(0 similar warnings suppressed)" in warnings[0] and "(0 similar" not in warnings[1]
    await limiter.aclose()
