"""Deadline and cancellation of one running invocation.

A call that runs long lowers its thread's OS priority until it ends (runtime.priority).
The guest can be stopped in two places: while it executes (the engine's epoch tick calls
`keep_running`) and while it sleeps in the host (`sleep` waits on the cancel event, never
past the deadline). Blocking through WASI polls is refused: the runtime replaces the guest's
monotonic-clock subscriptions with `refuse_wait`, which traps (at the deadline, for a wait
that would outlive it; at once otherwise). The guest SDK keeps waits on nothing (select,
poll, asyncio timers) away from WASI: they sleep through the host.
"""

from __future__ import annotations

import threading
import time

import wasmtime

from runtime import priority

DEADLINE = "deadline"
CANCELLED = "cancelled"
BLOCKED = "blocked"


_NEVER_CANCELLED = threading.Event()  # never set: the cancel of every call given none


class InvocationControl:
    def __init__(self, timeout_ms: int, cancel: threading.Event | None = None) -> None:
        self.arm(timeout_ms, cancel)

    def arm(self, timeout_ms: int, cancel: threading.Event | None = None) -> None:
        """Start the clock: the deadline is `timeout_ms` from now."""
        now = time.monotonic()
        self.deadline = now + timeout_ms / 1000
        self.long_after = now + priority.LONG_CALL_S
        self.cancel = cancel or _NEVER_CANCELLED
        self.stop_reason: str | None = None
        self._nice_before: int | None = None

    def keep_running(self) -> bool:
        """The engine's epoch tick (every 10 ms, on the thread running the guest)."""
        now = time.monotonic()
        if self.cancel.is_set():
            self.stop_reason = CANCELLED
        elif now >= self.deadline:
            self.stop_reason = DEADLINE
        elif now >= self.long_after and self._nice_before is None and priority.supported():
            self.long_after = self.deadline  # once per call
            self._nice_before = priority.lower()
        return self.stop_reason is None

    def settle(self) -> None:
        """The call is over: give its thread back the priority a long call took from it."""
        if self._nice_before is not None:
            priority.restore(self._nice_before)
            self._nice_before = None

    def sleep(self, nanos: int) -> None:
        wanted = nanos / 1e9
        remaining = self.deadline - time.monotonic()
        if self.cancel.wait(max(0.0, min(wanted, remaining))):
            self.stop_reason = CANCELLED
        elif wanted >= remaining:
            self.stop_reason = DEADLINE
        if self.stop_reason:
            raise wasmtime.WasmtimeError(f"wasmgate: sleep stopped ({self.stop_reason})")

    def refuse_wait(self, nanos: int) -> None:
        """A WASI clock subscription (a wait the engine could not interrupt): one that would
        outlive the deadline waits for it and ends the call as a timeout, as a sleep does;
        any other is refused at once."""
        if time.monotonic() + nanos / 1e9 >= self.deadline:
            self.sleep(nanos)  # raises at the deadline (or on cancel)
        self.stop_reason = BLOCKED
        raise wasmtime.WasmtimeError("wasmgate: waits on file descriptors are not supported in the sandbox")
