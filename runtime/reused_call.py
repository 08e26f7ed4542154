"""A second call into an instance that already served: what reusing instances would cost.

The runtime never does this (every request gets a never-used instance); the benchmarks and
tests call it to compare a fresh instance with a reused one, in time and in fuel, through the
request path a fresh instance's call takes (limits, captured logs, the report, the
response's checks).
"""

from __future__ import annotations

from runtime.instance import FreshInstance
from runtime.limits import Limits
from runtime.marshalling import SandboxRequest, SandboxResponse
from runtime.report import InvocationReport


def serve_again(
    instance: FreshInstance, request: SandboxRequest, limits: Limits
) -> tuple[SandboxResponse, InvocationReport]:
    """Serve `request` on `instance`, whatever it served before, as `FreshInstance.run` serves
    one on a never-used instance."""
    return instance._serve(request, limits)
