"""Runs one request of a bundle in a fresh wasmtime instance and classifies how it ended.

`Runtime.invoke` is the whole API the gateway needs: it is thread-safe (each call has its own
Store; the Engine, Linker and loaded components are shared), and it never exposes instances,
so instance creation can later move off the request path without changing callers.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Component, Linker

from runtime import capi, control as ctl, marshalling
from runtime.bundle import Bundle, BundleStore
from runtime.capture import CappedCapture
from runtime.engine import Engine
from runtime.errors import (
    Cancelled,
    DeadlineExceeded,
    FuelExhausted,
    GuestException,
    MemoryLimitExceeded,
    OutputTooLarge,
    SandboxError,
    SandboxTrap,
    StackOverflow,
)
from runtime.limits import Limits
from runtime.marshalling import SandboxRequest, SandboxResponse
from runtime.report import InvocationReport
from runtime.stdlib import GUEST_PATH as STDLIB_GUEST_PATH

HOST_INTERFACE = "wasmgate:sandbox/host@0.1.0"
MONOTONIC_CLOCK = "wasi:clocks/monotonic-clock@0.2.9"

# Host functions run synchronously on the thread that called into the guest.
_current = threading.local()


@dataclass
class Invocation:
    response: SandboxResponse
    report: InvocationReport


def _control() -> ctl.InvocationControl:
    control = getattr(_current, "control", None)
    if control is None:  # describe() and other calls without a request
        raise wasmtime.WasmtimeError("wasmgate: not inside an invocation")
    return control


def _define_host(linker: Linker) -> None:
    linker.add_wasip2()
    linker.allow_shadowing = True
    with linker.root() as root:
        with root.add_instance(HOST_INTERFACE) as host:
            host.add_func("sleep", lambda _store, nanos: _control().sleep(nanos))
        with root.add_instance(MONOTONIC_CLOCK) as clock:
            clock.add_func("now", lambda _store: time.monotonic_ns())
            clock.add_func("resolution", lambda _store: 1)
            clock.add_func("subscribe-duration", lambda _store, _d: _control().refuse_blocking())
            clock.add_func("subscribe-instant", lambda _store, _i: _control().refuse_blocking())


class Runtime:
    def __init__(self, store: BundleStore, engine: Engine | None = None) -> None:
        self.bundles = store
        self.engine = engine or Engine()
        self._linker = Linker(self.engine.wasm)
        _define_host(self._linker)
        self._components: dict[str, Component] = {}
        self._load_lock = threading.Lock()
        self._stdlib: Path | None = None

    # -- loading ---------------------------------------------------------------------------

    def load(self, bundle: Bundle) -> Component:
        """The bundle's component for this engine (precompiled once, then memory-mapped)."""
        component = self._components.get(bundle.hash)
        if component is None:
            with self._load_lock:
                component = self._components.get(bundle.hash)
                if component is None:
                    component = self.bundles.load_component(self.engine.wasm, self.engine.fingerprint, bundle)
                    if self._stdlib is None:  # before publishing: callers that skip the lock need it
                        self._stdlib = self.bundles.stdlib_dir()
                    self._components[bundle.hash] = component
        return component

    def forget(self, bundle_hash: str) -> None:
        self._components.pop(bundle_hash, None)

    # -- running ---------------------------------------------------------------------------

    def describe(self, bundle: Bundle) -> dict:
        """The route table the bundle's app declares."""
        result = self._run(bundle, "describe", (), Limits(timeout_ms=10_000), None)
        return json.loads(result[0])

    def invoke(
        self,
        bundle: Bundle,
        request: SandboxRequest,
        limits: Limits,
        cancel: threading.Event | None = None,
    ) -> Invocation:
        """Run `request` in a fresh instance. Raises a SandboxError subclass on any failure."""
        raw, report = self._run(bundle, "handle", (marshalling.to_wit(request),), limits, cancel, request)
        response, error = marshalling.from_wit(raw)
        if error is not None:
            raise _classify_guest_error(error, report)
        if len(response.body) > limits.max_response_bytes:
            raise OutputTooLarge(
                f"response body is {len(response.body)} bytes, limit {limits.max_response_bytes}", report
            )
        return Invocation(response, report)

    def _run(
        self,
        bundle: Bundle,
        export: str,
        args: tuple,
        limits: Limits,
        cancel: threading.Event | None,
        request: SandboxRequest | None = None,
    ) -> tuple[object, InvocationReport]:
        component = self.load(bundle)
        control = ctl.InvocationControl(limits.timeout_ms, cancel)
        stdout, stderr = CappedCapture(limits.max_log_bytes), CappedCapture(limits.max_log_bytes)
        store = wasmtime.Store(self.engine.wasm)
        store.set_fuel(limits.fuel)
        store.set_limits(memory_size=limits.memory_bytes)
        store.set_epoch_deadline(1)
        capi.on_epoch_deadline(store, control.keep_running)
        store.set_wasi(self._wasi(bundle, request, stdout, stderr))

        report = InvocationReport()
        started = time.perf_counter()
        _current.control = control
        try:
            instance = self._linker.instantiate(store, component)
            report.instantiate_ms = (time.perf_counter() - started) * 1000
            func = instance.get_func(store, export)
            if func is None:
                raise SandboxTrap(f"the component exports no `{export}`", report)
            result = func(store, *args)
        except wasmtime.WasmtimeError as error:
            raise _classify_trap(error, control, stderr, report) from None
        finally:
            _current.control = None
            finished = time.perf_counter()
            report.wall_ms = (finished - started) * 1000
            report.call_ms = max(0.0, report.wall_ms - report.instantiate_ms)
            report.fuel_used = limits.fuel - store.get_fuel()
            report.stdout, report.stderr = stdout.text(), stderr.text()
            report.logs_truncated = stdout.truncated or stderr.truncated
            # Free the instance now, not whenever the garbage collector gets to it (a store
            # dropped during interpreter shutdown can take the process down with it).
            store.close()
        return result, report

    def _wasi(
        self,
        bundle: Bundle,
        request: SandboxRequest | None,
        stdout: CappedCapture,
        stderr: CappedCapture,
    ) -> wasmtime.WasiConfig:
        wasi = wasmtime.WasiConfig()
        wasi.stdout_custom = stdout.write
        wasi.stderr_custom = stderr.write
        for host_dir, guest_dir in bundle.preopens():
            wasi.preopen_dir(str(host_dir), guest_dir, fs_mutable=False)
        assert self._stdlib is not None
        wasi.preopen_dir(str(self._stdlib), STDLIB_GUEST_PATH, fs_mutable=False)
        if request is not None:
            marshalling.configure_wasi(wasi, request)
        return wasi


def _classify_trap(
    error: wasmtime.WasmtimeError,
    control: ctl.InvocationControl,
    stderr: CappedCapture,
    report: InvocationReport,
) -> SandboxError:
    detail = str(error)
    if control.stop_reason == ctl.CANCELLED:
        return Cancelled(detail, report)
    if control.stop_reason == ctl.DEADLINE:
        return DeadlineExceeded(detail, report)
    if control.stop_reason == ctl.BLOCKED:
        return GuestException("blocking waits other than time.sleep are not supported in the sandbox", report)
    if isinstance(error, wasmtime.ExitTrap):
        return GuestException(f"the guest exited with status {error.code}", report)
    code = capi.trap_code(error)
    if code is capi.TrapCode.OUT_OF_FUEL:
        return FuelExhausted(detail, report)
    if code is capi.TrapCode.STACK_OVERFLOW:
        return StackOverflow(detail, report)
    if code is capi.TrapCode.INTERRUPT:
        return DeadlineExceeded(detail, report)
    # An allocation that failed outside the handler (or instantiation under a too-small limit).
    if "MemoryError" in stderr.text() or (code is None and "memory" in detail):
        return MemoryLimitExceeded(detail, report)
    return SandboxTrap(detail, report)


def _classify_guest_error(traceback_text: str, report: InvocationReport) -> SandboxError:
    last = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else ""
    if last.startswith("MemoryError"):
        return MemoryLimitExceeded(traceback_text, report)
    if last.startswith("RecursionError"):
        return StackOverflow(traceback_text, report)
    return GuestException(traceback_text, report)
