"""Waiting inside the sandbox: `select` and `asyncio` without blocking the host.

The host refuses every WASI clock subscription (a wait wasmtime could not interrupt), so
CPython's own `select.poll`, `select.select` and asyncio's selector loop would end the call,
even for a poll that does not wait (`selectors` runs one when it is imported). In the
sandbox there is nothing to wait for but time: no sockets, no pipes, no other threads. So:

- a poll or select with no file descriptors returns at once, or sleeps through the host's
  `time.sleep` (cut at the deadline, then the call ends as SANDBOX_TIMEOUT); one with file
  descriptors still goes to WASI and is refused;
- asyncio runs on `SandboxEventLoop`, which sleeps until its next timer; a loop with
  nothing scheduled would wait forever, and raises instead.

`install()` is called by the guest's entry point at build time; host code never calls it.
"""

from __future__ import annotations

import asyncio
import select
import time
from typing import Any


class _Poll:
    """`select.poll()` that sleeps instead of subscribing to the clock when it watches nothing."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._fds: set[int] = set()

    def register(self, fd: Any, *mask: int) -> None:
        self._fds.add(fd if isinstance(fd, int) else fd.fileno())
        self._real.register(fd, *mask)

    def modify(self, fd: Any, mask: int) -> None:
        self._real.modify(fd, mask)

    def unregister(self, fd: Any) -> None:
        self._fds.discard(fd if isinstance(fd, int) else fd.fileno())
        self._real.unregister(fd)

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        if self._fds:
            return self._real.poll(timeout)
        _sleep_for(None if timeout is None or timeout < 0 else timeout / 1000)
        return []


def _sleep_for(seconds: float | None) -> None:
    if seconds is None:
        raise OSError("waiting forever on nothing: no file descriptor can become ready in the sandbox")
    if seconds > 0:
        time.sleep(seconds)


def _patch_select() -> None:
    real_poll, real_select = select.poll, select.select

    def poll() -> _Poll:
        return _Poll(real_poll())

    def select_(rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None) -> tuple[list, list, list]:
        if rlist or wlist or xlist:
            return real_select(rlist, wlist, xlist, timeout)
        _sleep_for(timeout)
        return [], [], []

    select.poll, select.select = poll, select_


class WaitsForever(RuntimeError):
    """The event loop has nothing scheduled: what it waits for can never come in the sandbox."""


class _TimerSelector:
    """What `SandboxEventLoop` waits with: nothing can become ready, so it sleeps to the next timer."""

    def select(self, timeout: float | None) -> list:
        if timeout is None:
            raise WaitsForever("the event loop has nothing scheduled and would wait forever")
        _sleep_for(timeout)
        return []

    def close(self) -> None:
        pass


class SandboxEventLoop(asyncio.BaseEventLoop):
    """An asyncio loop for a sandbox: coroutines, tasks, timers and futures; no sockets,
    pipes, subprocesses, signals or threads."""

    def __init__(self) -> None:
        super().__init__()
        self._selector = _TimerSelector()

    def _process_events(self, event_list: list) -> None:
        pass

    def _write_to_self(self) -> None:
        pass  # no other thread can wake the loop


def _install_loop() -> None:
    base = getattr(asyncio.events, "_BaseDefaultEventLoopPolicy", None) or asyncio.DefaultEventLoopPolicy

    class Policy(base):  # type: ignore[misc, valid-type]
        _loop_factory = SandboxEventLoop

    setter = getattr(asyncio.events, "_set_event_loop_policy", None) or asyncio.set_event_loop_policy
    setter(Policy())


def install() -> None:
    _patch_select()
    _install_loop()

