"""Typed outcomes of an invocation that did not produce the guest's response.

Each carries a stable `code` (the gateway maps codes to HTTP statuses in one place) and the
`InvocationReport` of the failed run. `detail` is for operators' logs (a guest traceback, a
trap message); `message` is safe to show to a caller.
"""

from __future__ import annotations

from runtime.report import InvocationReport


class SandboxError(Exception):
    code = "SANDBOX_ERROR"
    message = "the sandboxed API failed"

    def __init__(self, detail: str = "", report: InvocationReport | None = None) -> None:
        super().__init__(detail or self.message)
        self.detail = detail
        self.report = report or InvocationReport()


class GuestException(SandboxError):
    """The handler raised (or the guest exited). The traceback is in `detail`, for logs only."""

    code = "SANDBOX_ERROR"
    message = "the API raised an exception"


class FuelExhausted(SandboxError):
    code = "SANDBOX_FUEL_EXHAUSTED"
    message = "the API ran out of fuel (CPU budget)"


class DeadlineExceeded(SandboxError):
    code = "SANDBOX_TIMEOUT"
    message = "the API did not answer before its deadline"


class Cancelled(SandboxError):
    code = "SANDBOX_CANCELLED"
    message = "the invocation was cancelled"


class MemoryLimitExceeded(SandboxError):
    code = "SANDBOX_MEMORY_LIMIT"
    message = "the API exceeded its memory limit"


class StackOverflow(SandboxError):
    code = "SANDBOX_STACK_OVERFLOW"
    message = "the API overflowed its stack"


class OutputTooLarge(SandboxError):
    code = "SANDBOX_OUTPUT_TOO_LARGE"
    message = "the API's response is larger than allowed"


class SandboxTrap(SandboxError):
    """Any other trap (a guest bug in native code, a broken component)."""

    code = "SANDBOX_TRAP"
    message = "the sandbox stopped the API"
