"""Pre-made instances: never used twice, never warmed by author code, drained and bounded.

Each test runs its own Runtime (its own engine and pool sizes) over the session's store.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime import Limits, PoolBudget, Runtime, SandboxRequest, engine
from runtime.reused_call import serve_again
import slot_pages

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


def test_a_reused_slot_shows_nothing_of_its_last_instance(bundle_store, fresh):
    """Six slots for twenty instances: slots are reset and reused, on this build by restoring
    only the pages the last instance wrote (wasmtime's pagemap_scan), and no instance sees them."""
    runtime = Runtime(bundle_store, concurrency=1, pool=PoolBudget(ready=0, fillers=0))
    try:
        assert runtime.engine.resets_dirty_pages_only == engine.pagemap_scan_settable()
        results = [call(runtime, fresh) for _ in range(20)]
    finally:
        runtime.close()
    assert results == [{"calls": 1, "seen_dirty_pages": 0, "grown": 1}] * 20


def _life_in_a_new_slot(runtime: Runtime, bundle, request: SandboxRequest) -> tuple[int, int]:
    """Make, warm, call and close one instance; the private pages of the image mapping its slot
    got, before and after the close."""
    before = set(slot_pages.image_mappings())
    instance = runtime._make_instance(bundle)
    try:
        slot = sorted(set(slot_pages.image_mappings()) - before)
        assert len(slot) == 1, slot  # the one memory of a new slot
        instance.warm()
        response, _report = instance.run(request, LIMITS)
        assert response.status == 200, response.body
        dirtied = slot_pages.private_pages(slot)
    finally:
        instance.close()
    return dirtied, slot_pages.private_pages(slot)


def test_a_slot_reset_copies_back_only_the_pages_its_instance_wrote(bundle_store, fresh):
    """Resetting a slot restores the pages its instance wrote and leaves the image file's own
    pages alone. wasmtime 50 also copied the image into every page the instance never touched,
    which then stayed private and were copied again at every later reset of that slot
    (measured: 321 pages written, 1,436 private after the reset); 51 does not."""
    echo = SandboxRequest("POST", "/echo/1", headers=[("content-type", "application/json")], body=b'{"a": 1}')
    runtime = Runtime(bundle_store, concurrency=1, pool=PoolBudget(ready=0, fillers=0))
    try:
        dirtied, after_reset = _life_in_a_new_slot(runtime, fresh, echo)
        results = [call(runtime, fresh) for _ in range(6)]  # the same slot again, and again
    finally:
        runtime.close()
    assert 0 < dirtied and after_reset == dirtied
    assert results == [{"calls": 1, "seen_dirty_pages": 0, "grown": 1}] * 6


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


def test_the_warm_up_goes_through_handle_where_the_guest_takes_it_there(bundle_store, fresh, monkeypatch):
    """A format 5 bundle's guest takes the warm-up request in `handle`; an earlier bundle's
    would hand an ASGI app that request, so it is warmed through the `warm` export."""
    import dataclasses

    from runtime import instance as fresh_instance, wit_codec
    from wasmgate import WARM_METHOD

    assert fresh_instance.WARM_METHOD == WARM_METHOD == fresh_instance.WARM_REQUEST.method
    called = []
    real_call = wit_codec.call
    monkeypatch.setattr(wit_codec, "call", lambda func, *rest, **kw: called.append(func) or real_call(func, *rest, **kw))
    older = dataclasses.replace(fresh, manifest={**fresh.manifest, "format": 4})
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=0, fillers=0))
    try:
        for bundle, export in ((fresh, "_handle"), (older, "_warm")):
            instance = runtime._make_instance(bundle)
            try:
                called.clear()
                instance.warm()
                assert called == [getattr(instance, export)] and instance.warmed
                response, _ = instance.run(SandboxRequest("GET", "/dirty"), LIMITS)
                assert json.loads(response.body) == {"calls": 1, "seen_dirty_pages": 0, "grown": 1}
            finally:
                instance.close()
    finally:
        runtime.close()


def test_only_the_benchmarks_reused_call_serves_an_instance_twice(bundle_store, fresh):
    """`run` serves one request per instance; `serve_again` (what a reused instance would
    cost, for the benchmarks) takes the same request path on an instance that served."""
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=0, fillers=0))
    instance = runtime._make_instance(fresh)
    try:
        first, _ = instance.run(SandboxRequest("GET", "/dirty"), LIMITS)
        with pytest.raises(RuntimeError):
            instance.run(SandboxRequest("GET", "/dirty"), LIMITS)
        again, report = serve_again(instance, SandboxRequest("GET", "/dirty"), LIMITS)
    finally:
        instance.close()
        runtime.close()
    assert json.loads(first.body)["calls"] == 1 and json.loads(again.body)["calls"] == 2
    assert json.loads(again.body)["seen_dirty_pages"] > 0 and report.fuel_used > 0


def test_a_pool_left_without_instances_is_refilled_while_its_call_still_runs(monkeypatch):
    """A hit wakes a filler only when it took the bundle's last ready instance (waking it on
    every hit let it take the GIL from the call it was woken by); the rest are topped up when
    instances come back."""
    from types import SimpleNamespace

    from runtime.instance_pool import InstancePool

    made: list[_Made] = []
    pool = InstancePool(lambda bundle: made.append(_Made(bundle)) or made[-1], 8,
                        PoolBudget(ready=2, depth=2, fillers=1, busy_s=0))
    bundle = SimpleNamespace(hash="r" * 64)
    try:
        first, _ = pool.acquire(bundle)  # a miss: the bundle is hot
        pool.release(first)
        wait_for(lambda: pool.stats()["ready"] == 2)
        held = [pool.acquire(bundle)[0] for _ in range(2)]  # the second empties it: a fill starts now
        wait_for(lambda: pool.stats()["ready"] == 2)
        assert not any(instance.closed for instance in held)
        for instance in held:
            pool.release(instance)
        wait_for(lambda: pool.stats()["closed"] == 3)
    finally:
        pool.close()


def test_the_warm_up_runs_the_sdk_s_request_path_so_a_fresh_call_costs_about_a_reused_one(pooled, fresh):
    """The warm-up sends a JSON request through an app of the SDK's own (never the author's):
    routing, parameter binding and the JSON response are then warm in a fresh instance, whose
    first call burns within 10% of the fuel a reused instance's repeat call does (before this
    warm-up: 20% more). Fuel counts guest instructions, so this does not depend on timing."""
    echo = SandboxRequest("POST", "/echo/7", query=[("q", "x")], headers=[("content-type", "application/json")],
                          body=b'{"name": "widget", "tags": [1, 2.5, "a"]}')
    pooled.invoke(fresh, echo, LIMITS)  # makes the bundle hot
    wait_for(lambda: pooled.pool.stats()["ready"] >= 1)
    first = pooled.invoke(fresh, echo, LIMITS)
    assert json.loads(first.response.body) == {"item": "7", "q": "x", "body": {"name": "widget", "tags": [1, 2.5, "a"]}}

    reused = pooled._make_instance(fresh)
    try:
        reused.warm()
        repeat_fuel = [serve_again(reused, echo, LIMITS)[1].fuel_used for _ in range(3)][-1]
    finally:
        reused.close()
    assert first.report.fuel_used <= 1.10 * repeat_fuel, (first.report.fuel_used, repeat_fuel)


def test_a_collection_in_a_request_scans_what_the_request_made_not_the_snapshot(bundle_store, fresh):
    """The snapshot's objects are frozen out of the collector at build time, so a full
    collection in a fresh instance burns little fuel beyond the call itself (scanning the
    snapshot's heap took ~15 M). Before, the allocations the build counted
    carried over into every instance and whichever first request crossed the threshold paid for
    that scan: the SDK's echo burned 1.57 M fuel instead of 0.32 M after an unrelated change."""
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=0, fillers=0))
    try:
        fuel = {}
        for run in ("true", "false"):
            invocation = runtime.invoke(fresh, SandboxRequest("GET", "/collect", query=[("run", run)]), LIMITS)
            assert invocation.response.status == 200, invocation.response.body
            fuel[run] = invocation.report.fuel_used
    finally:
        runtime.close()
    assert fuel["true"] - fuel["false"] < 150_000, fuel


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


class _Made:
    """Stands in for a FreshInstance: the pool only makes, warms, hands out and closes it."""

    def __init__(self, bundle) -> None:
        self.bundle = bundle
        self.closed = False

    def warm(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _pool_with_slow_fills(monkeypatch, await_s: float):
    """A pool whose filler's makes block until `finish` is set; calls' own makes do not."""
    from types import SimpleNamespace

    import runtime.instance_pool as instance_pool

    monkeypatch.setattr(instance_pool, "AWAIT_FILL_S", await_s)
    filling, finish, made = threading.Event(), threading.Event(), []

    def make(bundle):
        if threading.current_thread().name.startswith("wasmgate-pool"):
            filling.set()
            finish.wait(30)
        made.append(_Made(bundle))
        return made[-1]

    pool = instance_pool.InstancePool(make, 8, PoolBudget(ready=1, depth=1, fillers=1, busy_s=0))
    bundle = SimpleNamespace(hash="b" * 64)
    first, premade = pool.acquire(bundle)  # a miss: made inline, and the bundle is hot
    assert not premade
    pool.release(first)
    assert filling.wait(30), "the filler never started making an instance"
    return pool, bundle, finish, made


def test_a_call_takes_over_the_instance_a_filler_is_making(monkeypatch):
    pool, bundle, finish, made = _pool_with_slow_fills(monkeypatch, await_s=30)
    threading.Timer(0.05, finish.set).start()
    try:
        instance, premade = pool.acquire(bundle)
        assert premade and instance is made[1]  # the filler's, not a third made beside it
        assert len(made) == 2
        stats = pool.stats()
        assert stats["handed_over"] == 1 and stats["hits"] == 1 and stats["misses"] == 1
        pool.release(instance)
    finally:
        finish.set()
        pool.close()


def test_waiting_for_a_fill_is_bounded_and_one_caller_waits_per_fill(monkeypatch):
    pool, bundle, finish, made = _pool_with_slow_fills(monkeypatch, await_s=2.0)

    def timed_acquire(_):
        started = time.monotonic()
        return pool.acquire(bundle), time.monotonic() - started

    try:
        with ThreadPoolExecutor(3) as callers:
            timed = list(callers.map(timed_acquire, range(3)))
        results = [result for result, _ in timed]
        assert [premade for _, premade in results] == [False] * 3  # the fill never came in time
        assert pool.stats()["handed_over"] == 0 and len(made) == 4
        waits = sorted(seconds for _, seconds in timed)
        assert waits[1] < 1.0 and waits[2] >= 2.0  # one waited its bound out; the others made their own at once
        for instance, _ in results:
            pool.release(instance)
    finally:
        finish.set()
        pool.close()


def test_the_newest_ready_instance_goes_first_and_the_oldest_is_given_up_first():
    """The newest instance's memory is the likeliest to be in the CPU's caches still; when
    slots run short, a cold bundle gives up its oldest."""
    from types import SimpleNamespace

    from runtime.instance_pool import InstancePool

    made: list[_Made] = []
    closed: list[_Made] = []

    class Recorded(_Made):
        def close(self) -> None:
            super().close()
            closed.append(self)

    def make(bundle):
        made.append(Recorded(bundle))
        return made[-1]

    pool = InstancePool(make, 4, PoolBudget(ready=4, depth=4, fillers=1, busy_s=0))
    cold, hot = SimpleNamespace(hash="c" * 64), SimpleNamespace(hash="h" * 64)
    try:
        first, _ = pool.acquire(cold)  # a miss: the bundle is hot, the filler fills it
        pool.release(first)
        wait_for(lambda: pool.stats()["ready"] == 4)
        ready = [m for m in made if m is not first]
        instance, premade = pool.acquire(cold)
        assert premade and instance is ready[-1]
        pool.release(instance)
        wait_for(lambda: pool.stats()["ready"] == 4 and pool.stats()["live"] == 4)
        given_up = len(closed)
        taken, _ = pool.acquire(hot)  # no free slot: the cold bundle gives its instances up, oldest first
        assert ready[0].closed
        cold_ones = [m for m in closed[given_up:] if m.bundle is cold]
        assert cold_ones[0] is ready[0] and cold_ones == sorted(cold_ones, key=made.index)
        pool.release(taken)
    finally:
        pool.close()


def test_a_bundle_dropped_from_the_loaded_components_before_its_priming_is_not_primed():
    """At a start with more APIs than the loaded-components budget holds, priming each one
    in turn would load it again and drop another (tested with a pool whose component check
    says which are loaded)."""
    from types import SimpleNamespace

    from runtime.instance_pool import InstancePool

    gate, made = threading.Event(), []

    def make(bundle):
        gate.wait(30)  # the filler is busy with the first priming while the others are served
        made.append(_Made(bundle))
        return made[-1]

    bundles = [SimpleNamespace(hash=c * 64) for c in "abc"]
    loaded = {"c" * 64}  # the last one served is all the budget kept
    pool = InstancePool(make, 8, PoolBudget(ready=0, fillers=1), lambda bundle: bundle.hash in loaded | {"a" * 64})
    try:
        for bundle in bundles:
            pool.activate(bundle)
        gate.set()
        wait_for(lambda: pool.stats()["primed"] == 2 and pool.stats()["live"] == 0)
        assert sorted(instance.bundle.hash[0] for instance in made) == ["a", "c"]  # "b" was dropped: skipped
    finally:
        pool.close()
