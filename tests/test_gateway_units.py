"""Gateway pieces that need no server: rate limiting arithmetic, API key format, the worker
pool's per-API share, which calls run on the event loop's thread, a guest's answer as HTTP."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits.inline import InlineCalls
from gateway.limits.pool import ApiBusy, Overloaded, WorkerPool
from gateway.responses import guest_response
from gateway.limits.ratelimit import InProcessRateLimiter, RateLimit
from gateway.state import auth
from runtime import DeadlineExceeded, GuestException, Invocation, InvocationReport, Limits, SandboxResponse


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gcra_allows_a_burst_then_refills_one_request_per_interval():
    clock = Clock()
    limiter = InProcessRateLimiter(clock)
    limit = RateLimit(requests=3, per_seconds=30)  # one request back every 10 s
    decisions = [limiter.hit("k", limit) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[3].retry_after_s == 10 and decisions[3].headers()["Retry-After"] == "10"
    assert decisions[2].headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"}
    clock.now += 10
    assert limiter.hit("k", limit).allowed and not limiter.hit("k", limit).allowed
    assert limiter.hit("other key", limit).allowed
    clock.now += 1000  # idle buckets are forgotten, and start full again
    assert limiter.hit("k", limit).remaining == 2


def test_api_keys_name_their_id_and_are_kept_as_a_digest():
    new = auth.new_api_key()
    assert new.key.startswith(new.prefix + "_") and auth.key_id_of(new.key) == new.id
    assert auth.matches(new.digest, new.key) and not auth.matches(new.digest, new.key + "x")
    assert new.key not in new.digest
    for malformed in ("", "wg_", "wg__x", "xx_abc_def", "wg_abc"):
        assert auth.key_id_of(malformed) is None


def test_one_api_cannot_take_every_worker_and_others_pass_it_by():
    async def scenario() -> None:
        pool = WorkerPool(workers=3, queue_size=8, queue_timeout_s=0.2)
        assert pool.per_api == 2  # workers - 1 by default
        release = threading.Event()
        hog = [asyncio.create_task(pool.run("hostile", release.wait, 30)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(ApiBusy) as busy:  # its third call waits for its own share, then is shed
            await pool.run("hostile", lambda: "never")
        assert busy.value.per_api == 2 and pool.api_busy_total == 1
        assert await pool.run("benign", lambda: "answered") == "answered"  # the free worker
        release.set()
        assert await asyncio.gather(*hog) == [True, True]
        assert await pool.run("hostile", lambda: "again") == "again"  # its share is back
        assert pool._api_slots == {}  # idle APIs are forgotten

    asyncio.run(scenario())


def test_a_full_pool_still_sheds_with_overloaded():
    async def scenario() -> None:
        pool = WorkerPool(workers=2, queue_size=0, queue_timeout_s=0.2, per_api=2)
        release = threading.Event()
        running = [asyncio.create_task(pool.run(f"api-{i}", release.wait, 30)) for i in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as shed:
            await pool.run("api-3", lambda: "never")
        assert not isinstance(shed.value, ApiBusy)
        release.set()
        await asyncio.gather(*running)

    asyncio.run(scenario())



def _answer(wall_ms: float) -> Invocation:
    return Invocation(SandboxResponse(200, [], b"{}"), InvocationReport(wall_ms=wall_ms))


def test_an_api_runs_inline_only_after_a_streak_of_short_calls_and_only_when_alone():
    inline = InlineCalls(budget_ms=10, short_ms=5, streak=3)
    pool = WorkerPool(workers=2, queue_size=8, queue_timeout_s=0.2)
    inline.in_flight = 1
    for _ in range(2):
        inline.record("a", 1.0)
    assert not inline.admits("a", pool)  # two short calls of three
    inline.record("a", 4.9)
    assert inline.admits("a", pool) and not inline.admits("b", pool)  # per API
    inline.record("a", 5.1)  # one long call: the streak starts again
    assert not inline.admits("a", pool)
    for _ in range(3):
        inline.record("a", 0.5)
    assert inline.admits("a", pool)
    inline.in_flight = 2  # another call of the data plane is in flight
    assert not inline.admits("a", pool)
    inline.in_flight = 1
    pool._running = 1  # a call on the worker pool (a job, another API)
    assert not inline.admits("a", pool)
    pool._running = 0
    assert not InlineCalls(budget_ms=0, short_ms=5, streak=0).admits("a", pool)  # turned off


def test_an_inline_call_runs_under_the_budget_and_one_stopped_there_is_given_back():
    inline = InlineCalls(budget_ms=10, short_ms=5, streak=1)
    inline.in_flight = 1
    seen: list[int] = []

    def invoke(bundle, request, limits):
        seen.append(limits.timeout_ms)
        if request == "slow":
            raise DeadlineExceeded("deadline", InvocationReport(wall_ms=limits.timeout_ms + 7))
        if request == "raises":
            raise GuestException("boom", InvocationReport(wall_ms=1))
        return _answer(1.0)

    limits = Limits(timeout_ms=2000)
    assert inline.run("a", invoke, None, "fast", limits).report.wall_ms == 1.0
    inline.record("a", 1.0)
    assert inline.run("a", invoke, None, "slow", limits) is None  # the caller runs it on the pool
    assert not inline.admits("a", WorkerPool(workers=2, queue_size=8, queue_timeout_s=0.2))  # and earns it again
    with pytest.raises(GuestException):  # the call's own failure is its answer
        inline.run("a", invoke, None, "raises", limits)
    with pytest.raises(DeadlineExceeded):  # so is the API's own deadline, when it is the sooner
        inline.run("a", invoke, None, "slow", Limits(timeout_ms=5))
    assert seen == [10, 10, 10, 5]


@pytest.mark.parametrize(("location", "seen"), [
    ("/items/", "/run/abc/items/"),  # a path inside the API stays inside it
    ("/", "/run/abc/"),
    ("https://example.com/x", "https://example.com/x"),  # elsewhere is elsewhere
    ("//example.com/x", "//example.com/x"),  # scheme-relative: another host, not a path
    ("items", "items"),  # relative to the request's own path, which already carries the mount
])
def test_a_redirect_to_a_path_stays_inside_the_api(location, seen):
    response = guest_response(SandboxResponse(307, [("location", location)], b""), "/run/abc")
    assert response.headers["location"] == seen


def test_the_build_queue_says_how_many_builds_are_ahead():
    from gateway.services import BuildQueue

    queue = BuildQueue(workers=2)
    assert [queue.enter() for _ in range(4)] == [0, 0, 1, 2]  # two run at once, then they wait
    queue.leave()
    queue.leave()
    assert queue.enter() == 1


def test_build_slots_are_shared_by_the_processes_of_a_host_and_freed_when_one_dies(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from gateway.state.build_slots import BuildSlots

    slots = BuildSlots(tmp_path / "slots", 2)
    waits: list[str] = []
    holder = subprocess.Popen(  # another process of the same serve, in the middle of a build
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w');"
         " fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)", str(tmp_path / "slots" / "0.lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with slots.held(lambda: waits.append("first")):  # the other slot
            got = threading.Event()

            def third() -> None:
                with slots.held(lambda: waits.append("third")):
                    got.set()

            waiter = threading.Thread(target=third, daemon=True)
            waiter.start()
            assert not got.wait(0.5) and waits == ["third"]  # both taken: it waits, and says so once
            holder.send_signal(signal.SIGKILL)  # the kernel drops a dead holder's lock
            assert got.wait(30)
            waiter.join(30)
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    with slots.held(lambda: waits.append("late")), slots.held(lambda: waits.append("late")):
        pass  # both free again: nobody waits
    assert waits == ["third"] and time.monotonic() - started < 30


def test_a_zombie_counts_as_gone():
    """A process killed with its parent may stay a zombie (nobody reaps it): its marks (a build
    running, a scratch directory) must not be taken for a live process's."""
    import os
    import subprocess
    import time

    from runtime.scratch import gone

    child = subprocess.Popen(["sleep", "60"])
    try:
        assert not gone(str(child.pid)) and not gone(str(os.getpid()))
        child.kill()
        deadline = time.monotonic() + 30
        while not gone(str(child.pid)) and time.monotonic() < deadline:  # a zombie until waited for
            time.sleep(0.01)
        assert gone(str(child.pid))
        assert child.poll() is not None  # it was a zombie: reaped only now
    finally:
        child.kill()
        child.wait()


path_segments = st.lists(
    st.one_of(st.sampled_from(["", "abc", "docs", "openapi.json", "run", ".", "..", "x\n", " é"]), st.text(max_size=6)),
    max_size=4,
)
run_paths = st.one_of(
    path_segments.map(lambda segments: "/run/" + "/".join(segments)),
    st.text(st.sampled_from("/run-x.%\n é?"), max_size=12).map(lambda tail: "/run" + tail),
    st.text(max_size=16),
)


@settings(max_examples=400, deadline=None)
@given(path=run_paths, method=st.sampled_from(["GET", "POST", "HEAD", "BREW"]))
def test_direct_dispatch_takes_exactly_the_calls_the_run_routes_match(path, method):
    """gateway.http.dataplane_dispatch sends a call past FastAPI's router: it must take what
    the `/run/{api_id}[/{path}]` routes would, with the same parameters, and leave the rest
    (the API's pages, other methods, other paths) to the router."""
    from starlette.routing import Match

    from gateway.http import dataplane
    from gateway.http.dataplane_dispatch import direct_target

    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    expected = None
    for route in dataplane.router.routes:  # as Starlette's router: the first full match wins
        match, child = route.matches(scope)
        if match is Match.FULL:
            if route.endpoint is dataplane.run:
                expected = (child["path_params"]["api_id"], child["path_params"].get("path", ""))
            break
    assert direct_target(scope) == expected
