"""The bounded worker pool that runs sandbox calls off the event loop.

`workers` threads run invocations (wasmtime releases the GIL while the guest runs). A call
that finds them all busy waits up to `queue_timeout_s`, with at most `queue_size` calls
waiting; beyond either bound it is shed with `Overloaded` (503 + Retry-After), so a full
gateway answers quickly instead of hanging. A slot is freed when its thread finishes, not
when its caller gives up, so the pool never runs more than `workers` calls at once.

No API may hold every worker: at most `per_api` calls of one API run at once (default
`workers - 1`, at least 1). A call over its API's share waits for one of that API's own calls
to finish, within the same bounds, and is shed with `ApiBusy`; other APIs' calls pass it by.
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


class ApiBusy(Overloaded):
    """This API already runs its share of the workers; others are not held up by it."""

    def __init__(self, retry_after_s: int, per_api: int) -> None:
        super().__init__(retry_after_s)
        self.per_api = per_api


class WorkerPool:
    def __init__(self, workers: int, queue_size: int, queue_timeout_s: float, per_api: int | None = None) -> None:
        self.workers = max(1, workers)
        self.queue_size = max(0, queue_size)
        self.queue_timeout_s = queue_timeout_s
        self.per_api = max(1, min(self.workers, per_api if per_api is not None else self.workers - 1))
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")
        self._slots: asyncio.Semaphore | None = None
        # Per API: its semaphore and how many calls hold or wait for it (gone when none do).
        self._api_slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self._waiting = 0
        self._running = 0
        self.api_busy_total = 0

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.queue_timeout_s))

    def idle(self) -> bool:
        """No call is running or waiting."""
        return self._running == 0 and self._waiting == 0

    def stats(self) -> dict[str, int]:
        return {"workers": self.workers, "per_api": self.per_api, "running": self._running, "waiting": self._waiting}

    async def run(self, api: str, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` for `api` on a worker thread, or raise ApiBusy or Overloaded."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        slots = self._slots
        api_slots, users = self._api_slots.setdefault(api, (asyncio.Semaphore(self.per_api), [0]))
        users[0] += 1
        deadline = asyncio.get_running_loop().time() + self.queue_timeout_s
        try:
            await self._acquire(api_slots, deadline, lambda: ApiBusy(self.retry_after_s, self.per_api))
        except BaseException:
            self._leave(api, users)
            raise
        try:
            await self._acquire(slots, deadline, lambda: Overloaded(self.retry_after_s))
        except BaseException:
            self._release_api(api, api_slots)
            raise

        loop = asyncio.get_running_loop()
        result: asyncio.Future[T] = loop.create_future()
        self._running += 1

        def finish(value: object, error: BaseException | None) -> None:
            # One wake-up of the event loop per call: release the slots and resolve the caller.
            self._release(slots)
            self._release_api(api, api_slots)
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
            self._release_api(api, api_slots)
            raise
        return await result

    async def _acquire(self, slots: asyncio.Semaphore, deadline: float, shed: Callable[[], Overloaded]) -> None:
        """Take a slot at once, or wait for one until `deadline` with at most `queue_size` waiting."""
        if not slots.locked():
            await slots.acquire()
            return
        if self._waiting >= self.queue_size:
            raise self._shed(shed())
        self._waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        except TimeoutError:
            raise self._shed(shed()) from None
        finally:
            self._waiting -= 1

    def _shed(self, error: Overloaded) -> Overloaded:
        if isinstance(error, ApiBusy):
            self.api_busy_total += 1
        return error

    def _release(self, slots: asyncio.Semaphore) -> None:
        self._running -= 1
        slots.release()

    def _release_api(self, api: str, api_slots: asyncio.Semaphore) -> None:
        api_slots.release()
        self._leave(api, self._api_slots[api][1])

    def _leave(self, api: str, users: list[int]) -> None:
        users[0] -= 1
        if users[0] == 0:  # nobody holds or waits for this API's slots: forget them
            del self._api_slots[api]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
