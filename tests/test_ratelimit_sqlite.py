"""SqliteRateLimiter: the embedded limiter shared by the processes of one host.

Two limiters over one file stand for two worker processes. A decision is made on the caller's
thread when the file is free, and on a worker thread (waiting its turn) when another process
holds the write lock: either way every hit is counted exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gateway.limits.ratelimit import RateLimit
from gateway.limits.ratelimit_sqlite import SqliteRateLimiter

pytestmark = pytest.mark.anyio

TEN_A_MINUTE = RateLimit(10, 60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_two_processes_admit_exactly_the_limit_between_them(tmp_path):
    a, b = SqliteRateLimiter(tmp_path / "limits.db"), SqliteRateLimiter(tmp_path / "limits.db")
    decisions = [await (a if i % 2 else b).hit("key:one", TEN_A_MINUTE) for i in range(30)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 20
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert all(d.retry_after_s > 0 for d in decisions[10:])
    await a.aclose()
    await b.aclose()


async def test_a_decision_waits_for_another_process_without_blocking_the_loop(tmp_path):
    limiter = SqliteRateLimiter(tmp_path / "limits.db")
    other = sqlite3.connect(tmp_path / "limits.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process mid-decision
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    release.start()
    decision = await asyncio.wait_for(limiter.hit("key:one", TEN_A_MINUTE), timeout=10)
    ticker.cancel()
    release.join()
    assert decision.allowed and decision.remaining == 9
    assert ticks >= 10  # the loop kept running while the decision waited for the lock
    assert (await limiter.hit("key:one", TEN_A_MINUTE)).remaining == 8  # counted once, not twice
    other.close()
    await limiter.aclose()
