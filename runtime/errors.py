"""Typed outcomes of an invocation that did not produce the guest's response.

Each carries a stable `code` (the gateway maps codes to HTTP statuses in one place), a
`reason` that tells apart the failures sharing a code (`SANDBOX_ERROR`: the handler raised,
the guest exited, it waited on a file descriptor, its response was invalid, the request
could not be delivered), and the `InvocationReport` of the failed run. `detail` is for operators' logs (a guest traceback, a
trap message); `message` is safe to show to a caller.
"""

from __future__ import annotations

from runtime.report import InvocationReport


class SandboxError(Exception):
    code = "SANDBOX_ERROR"
    message = "the sandboxed API failed"
    reason = "failed"

    def __init__(self, detail: str = "", report: InvocationReport | None = None) -> None:
        super().__init__(detail or self.message)
        self.detail = detail
        self.report = report or InvocationReport()


class GuestException(SandboxError):
    """The handler raised (or the guest exited). The traceback is in `detail`, for logs only."""

    code = "SANDBOX_ERROR"
    message = "the API raised an exception"
    reason = "exception"


class GuestExit(SandboxError):
    """The guest called exit (sys.exit from a thread of its own, os._exit, a WASI proc_exit)."""

    code = "SANDBOX_ERROR"
    message = "the API exited instead of answering"
    reason = "exit"


class InvalidResponse(SandboxError):
    """What came back is not a valid answer: a forged or malformed response record, a status
    outside 200-599, a body that does not match its encoding."""

    code = "SANDBOX_ERROR"
    message = "the API returned an invalid response"
    reason = "invalid-response"


class BlockingWait(SandboxError):
    """The guest waited on a file descriptor (a WASI poll), which nothing in the sandbox can
    make ready; the deadline was not at stake, or the call would have ended as a timeout."""

    code = "SANDBOX_ERROR"
    message = "the API waited on something that cannot become ready in the sandbox"
    reason = "blocking-wait"


class DeliveryFailed(SandboxError):
    """The host could not hand the request to the instance (its request directory)."""

    code = "SANDBOX_ERROR"
    message = "the request could not be delivered to the sandbox"
    reason = "delivery"


class FuelExhausted(SandboxError):
    code = "SANDBOX_FUEL_EXHAUSTED"
    message = "the API ran out of fuel (CPU budget)"
    reason = "fuel"


class DeadlineExceeded(SandboxError):
    code = "SANDBOX_TIMEOUT"
    message = "the API did not answer before its deadline"
    reason = "timeout"


class Cancelled(SandboxError):
    code = "SANDBOX_CANCELLED"
    message = "the invocation was cancelled"
    reason = "cancelled"


class MemoryLimitExceeded(SandboxError):
    code = "SANDBOX_MEMORY_LIMIT"
    message = "the API exceeded its memory limit"
    reason = "memory"


class StackOverflow(SandboxError):
    code = "SANDBOX_STACK_OVERFLOW"
    message = "the API overflowed its stack"
    reason = "stack"


class OutputTooLarge(SandboxError):
    code = "SANDBOX_OUTPUT_TOO_LARGE"
    message = "the API's response is larger than allowed"
    reason = "output-too-large"


class SandboxTrap(SandboxError):
    """Any other trap (a guest bug in native code, a broken component)."""

    code = "SANDBOX_TRAP"
    message = "the sandbox stopped the API"
    reason = "trap"
