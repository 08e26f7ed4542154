"""Which sandbox calls run on the event loop's own thread instead of a worker thread.

A call handed to a worker thread and back pays two thread wake-ups, each waiting for the GIL
and for the other core to wake: at one connection, 0.2-0.5 ms of a 1.7-3.5 ms request
(measured phase by phase in one process, wrk, 2026-12-07). When this process has no other
call of the data plane in flight and nothing on the worker pool, nothing is gained by the
hop, so the call runs where the request already is, if its API has earned it: its last
`streak` calls each ended within `short_ms`. It runs under a deadline of `budget_ms` (its
API's own, if sooner), checked at the engine's epoch tick (every 10 ms). A call that
reaches that deadline is stopped and run again from the start in a fresh instance on the
worker pool, with its API's own limits: a sandbox call has no effect outside its answer, so
its caller sees one answer, the second run's (the first run's fuel and output are dropped;
`wasmgate_inline_calls_total` counts calls that ran inline and calls moved). Its API then
runs on the pool until it has had `streak` short calls in a row again. So an API, however
hostile, holds the event loop for at most `budget_ms` plus one tick once in every `streak`
+ 1 of its calls, and only while nothing else was in flight in the process.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from gateway.limits.pool import WorkerPool
from runtime import Bundle, DeadlineExceeded, Invocation, Limits, SandboxRequest

# A call that ended within SHORT_MS counts towards its API's streak; STREAK of them in a row
# let its next call run inline.
SHORT_MS = 5.0
STREAK = 8


class InlineCalls:
    def __init__(self, budget_ms: int, short_ms: float = SHORT_MS, streak: int = STREAK) -> None:
        self.budget_ms = budget_ms
        self.short_ms = short_ms
        self.streak = streak
        self.in_flight = 0  # calls of the data plane between their arrival and their answer
        self._short: dict[str, int] = {}  # per API: its latest calls that ended within short_ms, in a row

    def admits(self, api: str, pool: WorkerPool) -> bool:
        """Whether a call of `api` may run on the caller's thread now."""
        return (
            self.budget_ms > 0
            and self.in_flight == 1
            and pool.idle()
            and self._short.get(api, 0) >= self.streak
        )

    def run(
        self, api: str, invoke: Callable[..., Invocation], bundle: Bundle, request: SandboxRequest, limits: Limits
    ) -> Invocation | None:
        """`invoke` on this thread under the budget; None if it was stopped at the budget (the
        caller runs it on the pool). Any other SandboxError is the call's own, raised as usual."""
        budget = min(limits.timeout_ms, self.budget_ms)
        try:
            invocation = invoke(bundle, request, replace(limits, timeout_ms=budget))
        except DeadlineExceeded:
            if budget == limits.timeout_ms:  # the API's own deadline: that is its answer
                raise
            self._short.pop(api, None)
            return None
        return invocation

    def record(self, api: str, wall_ms: float) -> None:
        """A call of `api` ended after `wall_ms` in its sandbox."""
        if wall_ms <= self.short_ms:
            self._short[api] = min(self._short.get(api, 0) + 1, self.streak)
        else:
            self._short.pop(api, None)
