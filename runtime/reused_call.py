"""A second call into an instance that already served: what reusing instances would cost.

The runtime never does this (every request gets a never-used instance); the benchmarks and
tests call it to compare a fresh instance with a reused one, in time and in fuel:
`serve_again` through the request path a fresh instance's call takes (limits, captured logs,
the report, the response's checks), `call_again` as the bare guest call.
"""

from __future__ import annotations

from runtime import wit_codec
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


def call_again(instance: FreshInstance, request: SandboxRequest, limits: Limits) -> int:
    """Call `instance` with `request` once more, whatever it served before; the fuel it burned."""
    val = wit_codec.Val()
    wit_codec.lower_request(request, request.body.decode("latin-1"), None, val)
    instance.store.set_fuel(limits.fuel)
    instance.control.arm(limits.timeout_ms)
    result = wit_codec.call(instance._handle, instance.store, [val], want_result=True)
    wit_codec.lift_response(result)
    wit_codec.delete(result)
    return limits.fuel - instance.store.get_fuel()
