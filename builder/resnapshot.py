"""Pre-initializes an app on a base: a snapshot of CPython, the stdlib, the SDK and the app's
dependencies, without the app, that componentize-py made once for every app with the same
dependencies (`builder.bases`).

An instance of the base (its instrumented component, compiled once and kept) is sent the
guest's `INIT_METHOD` request, which imports the app from the python path mounted as the
build's, warms it up and lists its objects as componentize-py's pre-initialization does
(`sandbox_images/python/guest_entry.py`); then the two resets componentize-py runs at the
end of its own, and the instance's state is written back into the base's component
(`builder.snapshot_state`). Only the app's own import and warm-up run: componentize-py's
compile of the whole component (~6 s here, the most of a build) is not repeated.
"""

from __future__ import annotations

import threading
from pathlib import Path

import wasmtime
from wasmtime.component import Linker

from builder.bases import Base
from builder.componentize import explain
from builder.errors import BuildError
from builder.snapshot_state import MEMORY_EXPORT, RESET_ADAPTER_EXPORT, RESET_PREOPENS_EXPORT, Plan, State, rewrite
from runtime import wit_codec
from runtime.marshalling import SandboxRequest
from runtime.runtime import HOST_INTERFACE
from runtime.stdlib import GUEST_PATH as STDLIB_GUEST_PATH
from sandbox_images.python import INIT_METHOD

TIMEOUT_SECONDS = 300
_LOG_BYTES = 64 * 1024


def engine() -> wasmtime.Engine:
    """The engine instances of bases run on (its compiled bases are kept: the same settings
    every time). Epoch interruption ends an app whose import never returns."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def load_app(engine: wasmtime.Engine, base: Base, python_path: list[Path], stdlib: Path, output: Path) -> bytes:
    """The base's component with the app of `python_path` (the build's staged python path:
    the app's folder first, the sandbox image last) pre-initialized into it. What the app
    prints goes to `output`, shown in the BuildError of an app that cannot be loaded (worded
    as componentize-py's failures are)."""
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1)
    timed_out = threading.Event()
    timer = threading.Timer(TIMEOUT_SECONDS, lambda: (timed_out.set(), engine.increment_epoch()))
    timer.daemon = True
    wasi = wasmtime.WasiConfig()
    wasi.stdout_file = str(output)
    wasi.stderr_file = str(output)
    for index, directory in enumerate(python_path):  # the image's folder takes the object listing
        wasi.preopen_dir(str(directory), f"/{index}", fs_mutable=index == len(python_path) - 1)
    wasi.preopen_dir(str(stdlib), STDLIB_GUEST_PATH, fs_mutable=False)
    store.set_wasi(wasi)
    linker = Linker(engine)
    linker.add_wasip2()
    with linker.root() as root:
        with root.add_instance(HOST_INTERFACE) as host:
            host.add_func("sleep", _no_sleep)
    timer.start()
    try:
        instance = linker.instantiate(store, base.compiled)
        status, error = _initialize(instance, store)
        if status != 204:
            raise explain(_printed(output) + (error or f"the app could not be loaded (status {status})"))
        state = read_state(instance, store, base.plan)
    except wasmtime.WasmtimeError as error:
        if timed_out.is_set():
            raise BuildError(f"loading the app took longer than {TIMEOUT_SECONDS} s") from None
        raise explain(f"{_printed(output)}\n{error}") from None
    finally:
        timer.cancel()
    return rewrite(base.component, base.plan, state)


def read_state(instance: wasmtime.component.Instance, store: wasmtime.Store, plan: Plan) -> State:
    """The state of an instance of an instrumented component, after the resets
    componentize-py runs at the end of its pre-initialization (`builder.snapshot_state`)."""
    for export in (RESET_ADAPTER_EXPORT, RESET_PREOPENS_EXPORT):
        _call(instance, store, export)
    memory = _call(instance, store, MEMORY_EXPORT).encode("latin-1")
    return State(memory, {export: _call(instance, store, export) for _target, _index, _type, export in plan.global_exports()})


def _no_sleep(_store: wasmtime.Store, _nanos: int) -> None:
    raise RuntimeError("time.sleep while the app is imported at build time")


def _initialize(instance: wasmtime.component.Instance, store: wasmtime.Store) -> tuple[int, str | None]:
    handle = _func(instance, store, "handle")
    val = wit_codec.Val()
    wit_codec.lower_request(SandboxRequest(method=INIT_METHOD, path="/"), "", None, val)
    result = wit_codec.call(handle, store, [val], want_result=True)
    try:
        status, _headers, _body, _encoding, error = wit_codec.lift_response(result)
    finally:
        wit_codec.delete(result)
    handle.post_return(store)
    return status, error


def _call(instance: wasmtime.component.Instance, store: wasmtime.Store, name: str) -> object:
    func = _func(instance, store, name)
    result = func(store)
    func.post_return(store)
    return result


def _func(instance: wasmtime.component.Instance, store: wasmtime.Store, name: str) -> wasmtime.component.Func:
    func = instance.get_func(store, name)
    if func is None:
        raise BuildError(f"the base exports no `{name}`")
    return func


def _printed(output: Path) -> str:
    try:
        with open(output, "rb") as file:
            return file.read(_LOG_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""
