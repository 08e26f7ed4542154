"""Runs one HTTP request of a sandboxed API in a fresh wasmtime instance under hard limits.

Import surface for the layers above (gateway, builder, command line):
`Runtime`, `Limits`, `SandboxRequest`, `Upload`, `SandboxResponse`, `InvocationReport`, the
`SandboxError` family, `Bundle` and `BundleStore`.
"""

from runtime.bundle import Bundle, BundleNotFound, BundleStore
from runtime.errors import (
    BlockingWait,
    Cancelled,
    DeadlineExceeded,
    DeliveryFailed,
    FuelExhausted,
    GuestException,
    GuestExit,
    InvalidResponse,
    MemoryLimitExceeded,
    OutputTooLarge,
    SandboxError,
    SandboxTrap,
    StackOverflow,
)
from runtime.instance_pool import PoolBudget
from runtime.limits import Limits
from runtime.marshalling import SandboxRequest, SandboxResponse, Upload
from runtime.report import InvocationReport
from runtime.runtime import Invocation, Runtime

__all__ = [
    "BlockingWait",
    "Bundle",
    "BundleNotFound",
    "BundleStore",
    "Cancelled",
    "DeadlineExceeded",
    "DeliveryFailed",
    "FuelExhausted",
    "GuestException",
    "GuestExit",
    "InvalidResponse",
    "Invocation",
    "InvocationReport",
    "Limits",
    "MemoryLimitExceeded",
    "OutputTooLarge",
    "PoolBudget",
    "Runtime",
    "SandboxError",
    "SandboxRequest",
    "SandboxResponse",
    "SandboxTrap",
    "StackOverflow",
    "Upload",
]
