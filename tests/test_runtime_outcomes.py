"""Each way an invocation can end has its typed outcome, and the host serves the next one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runtime import priority
from runtime import (
    Cancelled,
    DeadlineExceeded,
    FuelExhausted,
    GuestException,
    GuestExit,
    Limits,
    MemoryLimitExceeded,
    OutputTooLarge,
    SandboxRequest,
    StackOverflow,
)


@pytest.fixture(scope="module")
def probe(build_app):
    return build_app("probe.py")


def get(path: str, **query) -> SandboxRequest:
    return SandboxRequest("GET", path, query=[(k, str(v)) for k, v in query.items()])


def assert_healthy(runtime, probe) -> None:
    """After any outcome the same runtime still serves a normal request."""
    invocation = runtime.invoke(probe, get("/state"), Limits())
    assert invocation.response.status == 200
    assert invocation.response.body == b'{"calls":1}'


def test_success_reports_fuel_time_and_logs(runtime, probe):
    invocation = runtime.invoke(probe, get("/print", kb=2), Limits())
    assert invocation.response.status == 200
    report = invocation.report
    assert report.fuel_used > 0
    if report.premade:  # made before the request: only the call is on its clock
        assert report.instantiate_ms == 0 and report.wall_ms == report.call_ms > 0
    else:
        assert 0 < report.instantiate_ms < report.wall_ms
    assert report.stdout.count("y" * 1023) == 2
    assert report.stderr == "to stderr\n"
    assert not report.logs_truncated


def test_guest_exception_keeps_traceback_for_logs(runtime, probe):
    with pytest.raises(GuestException) as caught:
        runtime.invoke(probe, get("/raise"), Limits())
    assert caught.value.code == "SANDBOX_ERROR"
    assert "ValueError: secret internals" in caught.value.detail
    assert "secret" not in caught.value.message
    assert_healthy(runtime, probe)


def test_fuel_exhausted(runtime, probe):
    with pytest.raises(FuelExhausted) as caught:
        runtime.invoke(probe, get("/loop"), Limits(fuel=50_000_000))
    assert caught.value.code == "SANDBOX_FUEL_EXHAUSTED"
    assert caught.value.report.fuel_used == 50_000_000
    assert_healthy(runtime, probe)


def test_deadline_stops_busy_guest(runtime, probe):
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        runtime.invoke(probe, get("/spin", seconds=30), Limits(timeout_ms=300, fuel=10**12))
    assert time.monotonic() - started < 2
    assert caught.value.code == "SANDBOX_TIMEOUT"
    assert_healthy(runtime, probe)


def test_deadline_cuts_sleep_short(runtime, probe):
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        runtime.invoke(probe, get("/sleep", seconds=30), Limits(timeout_ms=300))
    assert time.monotonic() - started < 1.5
    assert_healthy(runtime, probe)


def test_short_sleep_is_allowed(runtime, probe):
    invocation = runtime.invoke(probe, get("/sleep", seconds=0.05), Limits())
    assert invocation.response.body == b'{"slept":0.05}'
    assert invocation.report.wall_ms >= 50


def test_a_select_on_nothing_sleeps_and_is_cut_at_the_deadline(runtime, probe):
    invocation = runtime.invoke(probe, get("/select", seconds=0.05), Limits())
    assert invocation.response.body == b'{"waited":0.05}' and invocation.report.wall_ms >= 50
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        runtime.invoke(probe, get("/select", seconds=30), Limits(timeout_ms=1_000))
    assert time.monotonic() - started < 10  # a bound for a hang only
    assert_healthy(runtime, probe)


def test_memory_limit(runtime, probe):
    with pytest.raises(MemoryLimitExceeded) as caught:
        runtime.invoke(probe, get("/alloc", mb=200), Limits(memory_bytes=64 << 20))
    assert caught.value.code == "SANDBOX_MEMORY_LIMIT"
    assert_healthy(runtime, probe)


def test_memory_limit_allows_what_fits(runtime, probe):
    invocation = runtime.invoke(probe, get("/alloc", mb=16), Limits(memory_bytes=96 << 20))
    assert invocation.response.body == b'{"allocated":16}'


def test_wasm_stack_overflow(runtime, probe):
    with pytest.raises(StackOverflow) as caught:
        runtime.invoke(probe, get("/nest", depth=1_000_000), Limits(fuel=10**11, timeout_ms=30_000))
    assert caught.value.code == "SANDBOX_STACK_OVERFLOW"
    assert_healthy(runtime, probe)


def test_python_recursion_error_is_a_stack_overflow(runtime, probe):
    with pytest.raises(StackOverflow) as caught:  # ~1 G fuel, ~0.2 s alone: the deadline is only for a hang
        runtime.invoke(probe, get("/recurse", depth=100_000), Limits(timeout_ms=20_000))
    assert "RecursionError" in caught.value.detail
    assert_healthy(runtime, probe)


def test_output_too_large(runtime, probe):
    with pytest.raises(OutputTooLarge) as caught:
        runtime.invoke(probe, get("/big", mb=3), Limits(max_response_bytes=2 << 20))
    assert caught.value.code == "SANDBOX_OUTPUT_TOO_LARGE"
    assert_healthy(runtime, probe)


def test_logs_are_capped_without_failing_the_guest(runtime, probe):
    invocation = runtime.invoke(probe, get("/print", kb=64), Limits(max_log_bytes=4096))
    assert invocation.response.status == 200
    assert len(invocation.report.stdout) == 4096
    assert invocation.report.logs_truncated


def test_guest_exit_is_a_guest_error(runtime, probe):
    with pytest.raises(GuestExit) as caught:
        runtime.invoke(probe, get("/exit"), Limits())
    assert "exited" in caught.value.detail
    assert (caught.value.code, caught.value.reason) == ("SANDBOX_ERROR", "exit")
    assert_healthy(runtime, probe)


def test_cancel_interrupts_a_running_guest(runtime, probe):
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        runtime.invoke(probe, get("/spin", seconds=30), Limits(timeout_ms=30_000, fuel=10**12), cancel=cancel)
    assert time.monotonic() - started < 0.2 + 0.1 + 0.2  # within 100 ms of the cancel, plus slack


def test_cancel_interrupts_a_sleeping_guest(runtime, probe):
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        runtime.invoke(probe, get("/sleep", seconds=30), Limits(timeout_ms=30_000), cancel=cancel)
    assert time.monotonic() - started < 0.5


def test_invocations_run_in_parallel_threads(runtime, probe):
    """Two 0.6 s busy guests on two threads finish in well under the 1.2 s they take in series."""
    runtime.invoke(probe, get("/state"), Limits())  # warm
    results: list[int] = []

    def run() -> None:
        response = runtime.invoke(probe, get("/spin", seconds=0.6), Limits(fuel=10**12, timeout_ms=10_000)).response
        results.append(response.status)

    threads = [threading.Thread(target=run) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [200, 200]
    assert elapsed < 1.1, f"two 0.6 s guests took {elapsed:.2f} s: not parallel"


def test_many_threads_share_one_runtime(runtime, probe):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(5):
                assert runtime.invoke(probe, get("/state"), Limits()).response.body == b'{"calls":1}'
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _nice_of(tid: int) -> int:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat(5): nice


@pytest.mark.skipif(not priority.supported(), reason="this process may not give a thread its priority back")
def test_a_long_call_yields_the_cpu_until_it_ends(runtime, probe):
    seen: list[int] = []
    tid: list[int] = []
    after: list[int] = []

    def call() -> None:
        tid.append(threading.get_native_id())
        runtime.invoke(probe, get("/spin", seconds=0.5), Limits(timeout_ms=5_000))
        after.append(_nice_of(threading.get_native_id()))

    worker = threading.Thread(target=call)
    worker.start()
    while worker.is_alive():
        if tid:
            try:
                seen.append(_nice_of(tid[0]))
            except (FileNotFoundError, ProcessLookupError):
                break
        time.sleep(0.01)
    worker.join()
    assert seen[0] == 0 and priority.NICE_STEPS in seen  # niced once the call ran long
    assert after == [0]  # and given back when it ended: the thread's next call starts at 0
