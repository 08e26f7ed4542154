"""Deadline and cancellation of one running invocation.

The guest can be stopped in two places: while it executes (the engine's epoch tick calls
`keep_running`) and while it sleeps in the host (`sleep` waits on the cancel event, never
past the deadline). Blocking through WASI polls is refused: the runtime replaces the guest's
monotonic-clock subscriptions with `refuse_blocking`, which traps at once.
"""

from __future__ import annotations

import threading
import time

import wasmtime

DEADLINE = "deadline"
CANCELLED = "cancelled"
BLOCKED = "blocked"


class InvocationControl:
    def __init__(self, timeout_ms: int, cancel: threading.Event | None = None) -> None:
        self.arm(timeout_ms, cancel)

    def arm(self, timeout_ms: int, cancel: threading.Event | None = None) -> None:
        """Start the clock: the deadline is `timeout_ms` from now."""
        self.deadline = time.monotonic() + timeout_ms / 1000
        self.cancel = cancel or threading.Event()
        self.stop_reason: str | None = None

    def keep_running(self) -> bool:
        if self.cancel.is_set():
            self.stop_reason = CANCELLED
        elif time.monotonic() >= self.deadline:
            self.stop_reason = DEADLINE
        return self.stop_reason is None

    def sleep(self, nanos: int) -> None:
        wanted = nanos / 1e9
        remaining = self.deadline - time.monotonic()
        if self.cancel.wait(max(0.0, min(wanted, remaining))):
            self.stop_reason = CANCELLED
        elif wanted >= remaining:
            self.stop_reason = DEADLINE
        if self.stop_reason:
            raise wasmtime.WasmtimeError(f"wasmgate: sleep stopped ({self.stop_reason})")

    def refuse_blocking(self) -> None:
        self.stop_reason = BLOCKED
        raise wasmtime.WasmtimeError("wasmgate: blocking waits other than time.sleep are not supported")
