"""One never-used instance of a bundle: made before its request, used once, then closed.

Making an instance (store, WASI config, instantiation, an empty `ping` call and, when there
is CPU to spare, the warm-up: `WARM_REQUEST` through `handle`, or the `warm` export of a
bundle built before format 5) needs nothing of the request, so it can happen on a
background thread before the request exists. The request is delivered when the call
starts: small bodies by value (a latin-1 WIT string), large bodies and uploads as hard links
into the instance's own request directory, preopened read-only at /request when the
instance was made. `run` may be called once; `close` frees the store and empties that
directory, handing it back for a later instance (a mkdir and rmdir per instance cost more
than the call itself on some file systems).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

import wasmtime
from wasmtime.component import Component, ExportIndex, Linker

from runtime import capi, control as ctl, wit_codec
from runtime.bundle import Bundle
from runtime.capture import CappedCapture
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
from runtime.limits import Limits
from runtime.marshalling import REQUEST_DIR_GUEST, SandboxRequest, SandboxResponse, context_header
from runtime.report import InvocationReport
from runtime.stdlib import GUEST_PATH as STDLIB_GUEST_PATH

# Host functions run synchronously on the thread that called into the guest.
current = threading.local()
# Fuel for making an instance (the warm-up burns ~0.2e6); a request gets its own budget.
_SETUP_FUEL = 1_000_000_000
_SETUP_TIMEOUT_MS = 30_000
_SETUP_LOG_BYTES = 64 * 1024
_BODY_FILE = ".body"  # upload files are named by the gateway with digits only
# The warm-up request the pool sends through `handle` (format 5 guests): its method is one no
# route can take and a gateway never sends; the guest runs its own warm-up for it, never the
# author's code (sandbox_images/python/guest_entry.py). JSON, with a query and the caller's
# context, as most requests are.
WARM_METHOD = "WASMGATE-WARM"
WARM_REQUEST = SandboxRequest(
    WARM_METHOD, "/", query=[("q", "1")], body=b"{}",
    headers=[("content-type", "application/json"), ("accept", "*/*"), context_header(("127.0.0.1", 1), "/run/warm")],
)


def current_control() -> ctl.InvocationControl:
    control = getattr(current, "control", None)
    if control is None:
        raise wasmtime.WasmtimeError("wasmgate: not inside an invocation")
    return control


class Loaded(NamedTuple):
    """A loaded component and the exports the runtime calls, looked up once for all its
    instances (by name, each instance's lookups were ~7% of a pool filler's GIL time)."""

    component: Component
    linker: Linker  # defines the host and the layers the component imports
    handle: ExportIndex
    ping: ExportIndex
    warm: ExportIndex
    describe: ExportIndex

    @classmethod
    def of(cls, component: Component, linker: Linker) -> Loaded:
        exports = []
        for name in cls._fields[2:]:
            index = component.get_export_index(name)
            if index is None:
                raise SandboxTrap(f"the component exports no `{name}` (rebuild the bundle)")
            exports.append(index)
        return cls(component, linker, *exports)


class FreshInstance:
    """An instantiated bundle that has never seen a request."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        loaded: Loaded,
        bundle: Bundle,
        stdlib: Path,
        request_dir: Path,
        on_closed: Callable[[Path], None] = lambda request_dir: None,
    ) -> None:
        """`request_dir` must exist and be empty; `on_closed` gets it back, empty, at close."""
        self.bundle = bundle
        self.request_dir = request_dir
        self._on_closed = on_closed
        self.made_at = time.monotonic()
        self.warmed = False
        self._linked: list[Path] = []
        self._used = False
        self.control = ctl.InvocationControl(_SETUP_TIMEOUT_MS)
        self.stdout, self.stderr = CappedCapture(_SETUP_LOG_BYTES), CappedCapture(_SETUP_LOG_BYTES)
        self.store = wasmtime.Store(engine)
        self.store.set_fuel(_SETUP_FUEL)
        self.store.set_epoch_deadline(1)
        capi.on_epoch_deadline(self.store, self.control.keep_running)
        self.store.set_wasi(self._wasi(bundle, stdlib))
        started = time.perf_counter()
        current.control = self.control
        try:
            instance = loaded.linker.instantiate(self.store, loaded.component)
            self.instantiate_ms = (time.perf_counter() - started) * 1000
            self._handle = _export(instance, self.store, loaded.handle)
            self._ping = _export(instance, self.store, loaded.ping)
            self._warm = _export(instance, self.store, loaded.warm)
            self._describe = _export(instance, self.store, loaded.describe)
            wit_codec.call(self._ping, self.store, [], want_result=False)
        except BaseException:
            self.close()
            raise
        finally:
            current.control = None
            self.control.settle()

    def _wasi(self, bundle: Bundle, stdlib: Path) -> wasmtime.WasiConfig:
        wasi = wasmtime.WasiConfig()
        wasi.stdout_custom = lambda data: self.stdout.write(data)
        wasi.stderr_custom = lambda data: self.stderr.write(data)
        for host_dir, guest_dir in bundle.preopens:
            wasi.preopen_dir(str(host_dir), guest_dir, fs_mutable=False)
        wasi.preopen_dir(str(stdlib), STDLIB_GUEST_PATH, fs_mutable=False)
        wasi.preopen_dir(str(self.request_dir), REQUEST_DIR_GUEST, fs_mutable=False)
        return wasi

    def warm(self) -> None:
        """Run the SDK's request path on a synthetic request (no handler runs): through
        `handle` itself where the guest takes `WARM_REQUEST` there, else the `warm` export."""
        current.control = self.control
        try:
            if not self.bundle.warms_through_handle:
                wit_codec.call(self._warm, self.store, [], want_result=False)
            else:
                result = wit_codec.call(self._handle, self.store, [self._lower(WARM_REQUEST)], want_result=True)
                try:
                    error = wit_codec.lift_response(result)[-1]
                finally:
                    wit_codec.delete(result)
                if error is not None:
                    raise SandboxTrap(f"the warm-up failed:\n{error}")
            self.warmed = True
        finally:
            current.control = None
            self.control.settle()

    # -- the one call ---------------------------------------------------------------------

    def describe(self) -> str:
        """The bundle's route table as JSON text (uses the instance up like a request)."""
        self._take()
        current.control = self.control
        try:
            result = wit_codec.call(self._describe, self.store, [], want_result=True)
        except wasmtime.WasmtimeError as error:
            raise SandboxTrap(f"describe failed: {error}\n{self.stderr.text()}") from None
        finally:
            current.control = None
        try:
            return wit_codec._text(result, "the route table")
        finally:
            wit_codec.delete(result)

    def run(
        self, request: SandboxRequest, limits: Limits, cancel: threading.Event | None = None
    ) -> tuple[SandboxResponse, InvocationReport]:
        """Deliver `request`, call the handler and read its response. Raises a SandboxError."""
        self._take()
        return self._serve(request, limits, cancel)

    def _serve(
        self, request: SandboxRequest, limits: Limits, cancel: threading.Event | None = None
    ) -> tuple[SandboxResponse, InvocationReport]:
        """`run` without the check that the instance never served (runtime.reused_call)."""
        report = InvocationReport(instantiate_ms=self.instantiate_ms)
        self.stdout, self.stderr = CappedCapture(limits.max_log_bytes), CappedCapture(limits.max_log_bytes)
        started = time.perf_counter()
        try:
            params = [self._lower(request)]
        except OSError as error:
            raise DeliveryFailed(f"could not deliver the request: {error}", report) from None
        self.store.set_fuel(limits.fuel)
        self.store.set_limits(memory_size=limits.memory_bytes)
        self.control.arm(limits.timeout_ms, cancel)
        current.control = self.control
        result = None
        try:
            result = wit_codec.call(self._handle, self.store, params, want_result=True)
            status, headers, text, encoding, error = wit_codec.lift_response(result)
        except wasmtime.WasmtimeError as trap:
            raise self._classify_trap(trap, report) from None
        except wit_codec.MalformedResponse as malformed:
            raise InvalidResponse(f"the guest's response is malformed: {malformed}", report) from None
        finally:
            current.control = None
            self.control.settle()
            if result is not None:
                wit_codec.delete(result)
            report.call_ms = (time.perf_counter() - started) * 1000
            report.wall_ms = report.call_ms
            report.fuel_used = limits.fuel - self.store.get_fuel()
            report.stdout, report.stderr = self.stdout.text(), self.stderr.text()
            report.logs_truncated = self.stdout.truncated or self.stderr.truncated
        if error is not None:
            raise _classify_guest_error(error, report)
        if not 200 <= status <= 599:
            raise InvalidResponse(f"the guest answered with status {status}", report)
        body = _body_bytes(text, encoding, report)
        if len(body) > limits.max_response_bytes:
            raise OutputTooLarge(f"response body is {len(body)} bytes, limit {limits.max_response_bytes}", report)
        return SandboxResponse(status, headers, body), report

    def _take(self) -> None:
        if self._used:
            raise RuntimeError("an instance serves one call only")
        self._used = True

    def _lower(self, request: SandboxRequest) -> wit_codec.Val:
        body_file = None
        if request.files:
            upload_dir = request.upload_dir.resolve() if request.upload_dir else None
            for upload in request.files:
                if upload_dir is None or upload.path.resolve().parent != upload_dir:
                    raise ValueError(f"upload {upload.path} is not directly inside its request's upload_dir")
                self._link(upload.path, upload.path.name)
        if isinstance(request.body, Path):
            self._link(request.body, _BODY_FILE)
            body_file, body = f"{REQUEST_DIR_GUEST}/{_BODY_FILE}", ""
        else:
            body = request.body.decode("latin-1")
        val = wit_codec.Val()
        wit_codec.lower_request(request, body, body_file, val)
        return val

    def _link(self, source: Path, name: str) -> None:
        target = self.request_dir / name
        try:
            os.link(source, target)
        except OSError:  # another file system: copy
            shutil.copyfile(source, target)
        self._linked.append(target)

    def _classify_trap(self, error: wasmtime.WasmtimeError, report: InvocationReport) -> SandboxError:
        detail, control = str(error), self.control
        if control.stop_reason == ctl.CANCELLED:
            return Cancelled(detail, report)
        if control.stop_reason == ctl.DEADLINE:
            return DeadlineExceeded(detail, report)
        if control.stop_reason == ctl.BLOCKED:
            return BlockingWait(detail, report)
        if isinstance(error, wasmtime.ExitTrap):
            return GuestExit(f"the guest exited with status {error.code}", report)
        code = capi.trap_code(error)
        if code is capi.TrapCode.OUT_OF_FUEL:
            return FuelExhausted(detail, report)
        if code is capi.TrapCode.STACK_OVERFLOW:
            return StackOverflow(detail, report)
        if code is capi.TrapCode.INTERRUPT:
            return DeadlineExceeded(detail, report)
        # An allocation that failed outside the handler (the traceback is on stderr).
        if "MemoryError" in self.stderr.text() or (code is None and "memory" in detail):
            return MemoryLimitExceeded(detail, report)
        return SandboxTrap(detail, report)

    # -- end of life ------------------------------------------------------------------------

    def close(self) -> None:
        """Free the store and the request directory (safe to call more than once)."""
        store, self.store = self.store, None
        if store is None:
            return
        store.close()
        try:
            for path in self._linked:
                path.unlink(missing_ok=True)
        except OSError:  # not reusable: remove it all
            shutil.rmtree(self.request_dir, ignore_errors=True)
            return
        self._linked.clear()
        self._on_closed(self.request_dir)


def _export(
    instance: wasmtime.component.Instance, store: wasmtime.Store, index: ExportIndex
) -> wasmtime.component.Func:
    func = instance.get_func(store, index)
    if func is None:
        raise SandboxTrap("a component export is not a function (rebuild the bundle)")
    return func


def _body_bytes(text: str, encoding: str, report: InvocationReport) -> bytes:
    """The response body as bytes; a forged record (bad encoding, code points > 255 in a
    latin-1 body) is the API's error, not the host's."""
    if encoding == "utf8":
        return text.encode("utf-8")
    if encoding == "latin1":
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidResponse("the guest's latin-1 response body holds code points above 255", report) from None
    raise InvalidResponse(f"the guest's response has an unknown body encoding {encoding!r}", report)


def _classify_guest_error(traceback_text: str, report: InvocationReport) -> SandboxError:
    last = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else ""
    if last.startswith("MemoryError"):
        return MemoryLimitExceeded(traceback_text, report)
    if last.startswith("RecursionError"):
        return StackOverflow(traceback_text, report)
    return GuestException(traceback_text, report)
