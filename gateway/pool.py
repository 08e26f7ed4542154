"""The bounded worker pool that runs sandbox calls off the event loop.

`workers` threads run invocations (wasmtime releases the GIL while the guest runs). A call
that finds them all busy waits up to `queue_timeout_s`, with at most `queue_size` calls
waiting; beyond either bound it is shed with `Overloaded` (503 + Retry-After), so a full
gateway answers quickly instead of hanging. A slot is freed when its thread finishes, not
when its caller gives up, so the pool never runs more than `workers` calls at once.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"worker pool full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class WorkerPool:
    def __init__(self, workers: int, queue_size: int, queue_timeout_s: float) -> None:
        self.workers = max(1, workers)
        self.queue_size = max(0, queue_size)
        self.queue_timeout_s = queue_timeout_s
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._running = 0

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.queue_timeout_s))

    def stats(self) -> dict[str, int]:
        return {"workers": self.workers, "running": self._running, "waiting": self._waiting}

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on a worker thread, or raise Overloaded."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        slots = self._slots
        if slots.locked():
            if self._waiting >= self.queue_size:
                raise Overloaded(self.retry_after_s)
            self._waiting += 1
            try:
                async with asyncio.timeout(self.queue_timeout_s):
                    await slots.acquire()
            except TimeoutError:
                raise Overloaded(self.retry_after_s) from None
            finally:
                self._waiting -= 1
        else:
            await slots.acquire()

        loop = asyncio.get_running_loop()
        result: asyncio.Future[T] = loop.create_future()
        self._running += 1

        def finish(value: object, error: BaseException | None) -> None:
            # One wake-up of the event loop per call: release the slot and resolve the caller.
            self._release(slots)
            if result.cancelled():
                return
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(value)  # type: ignore[arg-type]

        def work() -> None:
            try:
                value = fn(*args)
            except BaseException as error:  # handed to the caller
                loop.call_soon_threadsafe(finish, None, error)
            else:
                loop.call_soon_threadsafe(finish, value, None)

        try:
            self._executor.submit(work)
        except BaseException:
            self._release(slots)
            raise
        return await result

    def _release(self, slots: asyncio.Semaphore) -> None:
        self._running -= 1
        slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
