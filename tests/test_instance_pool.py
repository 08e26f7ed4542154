"""Pre-made instances: never used twice, never warmed by author code, drained and bounded.

Each test runs its own Runtime (its own engine and pool sizes) over the session's store.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from runtime import Limits, PoolBudget, Runtime, SandboxRequest

LIMITS = Limits(timeout_ms=10_000)


@pytest.fixture(scope="module")
def fresh(build_app):
    return build_app("fresh.py")


def call(runtime: Runtime, bundle, method: str = "GET", path: str = "/dirty") -> dict:
    invocation = runtime.invoke(bundle, SandboxRequest(method, path), LIMITS)
    assert invocation.response.status == 200, invocation.response.body
    return json.loads(invocation.response.body)


def wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def pooled(bundle_store):
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=3, depth=3, fillers=1, busy_s=0))
    yield runtime
    runtime.close()


def test_every_call_gets_a_never_used_instance_from_the_pool(pooled, fresh):
    call(pooled, fresh)  # makes the bundle hot
    results = []
    for _ in range(12):
        wait_for(lambda: pooled.pool.stats()["ready"] >= 1)
        results.append(call(pooled, fresh))
    assert results == [{"calls": 1, "seen_dirty_pages": 0, "grown": 1}] * 12
    stats = pooled.pool.stats()
    assert stats["hits"] >= 12 and stats["warmed"] >= 12


def test_a_throughput_bound_bundle_is_filled_without_warm_up(bundle_store, fresh):
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=2, depth=2, fillers=1, busy_s=3600))
    try:
        call(runtime, fresh)  # a miss: busy from now on
        wait_for(lambda: runtime.pool.stats()["ready"] == 2)
        assert call(runtime, fresh)["calls"] == 1
        assert runtime.pool.stats()["warmed"] == 0 and runtime.pool.stats()["hits"] == 1
    finally:
        runtime.close()


def test_the_warm_up_never_reaches_a_handler_even_a_catch_all(pooled, fresh):
    call(pooled, fresh, path="/x")
    for method in ("GET", "POST", "OPTIONS"):
        wait_for(lambda: pooled.pool.stats()["ready"] >= 1)
        assert call(pooled, fresh, method, "/any/where") == {
            "rest": "any/where", "method": method, "calls": 1, "catch_all": 1
        }
    assert pooled.pool.stats()["hits"] >= 3 and pooled.pool.stats()["warmed"] >= 3


def test_without_a_pool_every_call_makes_its_instance_inline(bundle_store, fresh):
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=0, fillers=0))
    try:
        assert [call(runtime, fresh)["calls"] for _ in range(3)] == [1, 1, 1]
        stats = runtime.pool.stats()
        assert stats["misses"] == 3 and stats["hits"] == 0 and stats["live"] == 0
    finally:
        runtime.close()


def test_a_drained_bundle_keeps_nothing_ready_and_still_serves(pooled, fresh):
    call(pooled, fresh)
    wait_for(lambda: pooled.pool.stats()["ready"] == 3)
    pooled.drain(fresh.hash)
    wait_for(lambda: pooled.pool.stats()["ready"] == 0)
    assert call(pooled, fresh)["calls"] == 1  # made inline; not refilled while drained
    time.sleep(0.3)
    assert pooled.pool.stats()["ready"] == 0
    pooled.pool.activate(fresh)
    call(pooled, fresh)
    wait_for(lambda: pooled.pool.stats()["ready"] >= 1)


def test_more_callers_than_slots_wait_for_a_slot_instead_of_failing(bundle_store, fresh):
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=1, depth=1, fillers=1), concurrency=1)
    results, errors = [], []

    def worker() -> None:
        try:
            for _ in range(3):
                results.append(call(runtime, fresh)["calls"])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors and results == [1] * 36
        assert runtime.pool.stats()["live"] <= runtime.pool.slots
    finally:
        runtime.close()


def test_a_served_bundle_is_primed_once_without_keeping_instances(pooled, fresh):
    pooled.serve(fresh)
    pooled.serve(fresh)  # served again (a rollback): primed only once
    wait_for(lambda: pooled.pool.stats()["primed"] == 1)
    wait_for(lambda: pooled.pool.stats()["live"] == 0)
    assert pooled.pool.stats()["ready"] == 0  # not called yet: nothing kept ready
    assert call(pooled, fresh)["calls"] == 1
