"""SqliteRateLimiter: the embedded limiter shared by the processes of one host.

Two limiters over one file stand for two worker processes. A decision is made on the caller's
thread when the file is free, and on a worker thread (waiting its turn) when another process
holds the write lock: either way every hit is counted exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3

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
    # The lock is released only once the loop has turned ten times with the decision still
    # waiting (a timer started beforehand could fire first when the machine is loaded, and
    # the decision then never waits).
    hit = asyncio.create_task(limiter.hit("key:one", TEN_A_MINUTE))
    for _ in range(10):
        await asyncio.sleep(0.01)
    assert not hit.done()  # waiting for the other transaction, the loop still running
    other.execute("COMMIT")
    decision = await asyncio.wait_for(hit, timeout=10)
    assert decision.allowed and decision.remaining == 9
    assert (await limiter.hit("key:one", TEN_A_MINUTE)).remaining == 8  # counted once, not twice
    other.close()
    await limiter.aclose()
