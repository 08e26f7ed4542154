"""Thread pools inside the sandbox: their work runs in place.

CPython on WASI has one thread and cannot start another, so a `concurrent.futures`
`ThreadPoolExecutor` fails on its first `submit`: one a handler makes for blocking work, and
the one behind asyncio's `run_in_executor` and `asyncio.to_thread` (the loop's default
executor). Here `submit` runs the work at once, in the calling thread, as one worker thread
would (its initializer first, once; a failing initializer breaks the pool as it does
natively; no running event loop), and returns its future already done with the result or
the exception; asyncio then hands that to the awaiting coroutine as from a thread. Work that
waits for other work submitted after it (a producer and a consumer in one pool) cannot
finish here, as with a single worker thread.

`install()` is called by the guest's entry point at build time; host code never calls it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from concurrent.futures import _base, thread
from typing import Any, Callable


def _call_as_worker(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` in place, as a worker thread runs it: with no running event loop
    and no current task (in a thread, `asyncio.get_running_loop()` raises and `asyncio.run()`
    starts a loop of its own; here the caller's loop and task are set aside for the call and
    given back after)."""
    running = asyncio.events._get_running_loop()
    if running is None:
        return fn(*args, **kwargs)
    task = asyncio.tasks._swap_current_task(running, None)  # the thread's task too (Python 3.14)
    asyncio.events._set_running_loop(None)
    try:
        return fn(*args, **kwargs)
    finally:
        asyncio.events._set_running_loop(running)
        asyncio.tasks._swap_current_task(running, task)


def _submit(self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any,
            **kwargs: Any) -> concurrent.futures.Future:
    with self._shutdown_lock:  # the checks `ThreadPoolExecutor.submit` makes, with its errors
        if self._broken:
            raise self.BROKEN(self._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if thread._shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
    future: concurrent.futures.Future = _base.Future()
    item = thread._WorkItem(future, self._resolve_work_item_task(fn, args, kwargs))
    worker = self.__dict__.get("_wasmgate_worker")
    if worker is None:  # the pool's one worker starts: its initializer runs
        worker = self._create_worker_context()
        try:
            worker.initialize()
        except BaseException:
            _base.LOGGER.critical("Exception in initializer:", exc_info=True)
            self._work_queue.put(item)
            self._initializer_failed()  # the pool is broken; the item's future says so
            return future
        self._wasmgate_worker = worker
    _call_as_worker(item.run, worker)  # not under the pool's lock: the work may submit more work
    return future


def install() -> None:
    concurrent.futures.ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign]
