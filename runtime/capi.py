"""wasmtime C API features that wasmtime-py (pinned 51.0.0) does not wrap, and its short C
calls made without letting go of the GIL.

Kept in one place because each reaches into `wasmtime._bindings`, whose shape is tied to the
pinned version: trap codes, the epoch-deadline callback, and the function pointers that keep
the GIL (for `wit_codec`'s allocations, and for wasmtime-py's own calls that make a store and
set its fuel and limits).
"""

from __future__ import annotations

import ctypes
import enum
import itertools
from typing import Callable

import wasmtime
import wasmtime._bindings as _b
import wasmtime._ffi as _ffi


class TrapCode(enum.IntEnum):
    STACK_OVERFLOW = 0
    MEMORY_OUT_OF_BOUNDS = 1
    HEAP_MISALIGNED = 2
    TABLE_OUT_OF_BOUNDS = 3
    INDIRECT_CALL_TO_NULL = 4
    BAD_SIGNATURE = 5
    INTEGER_OVERFLOW = 6
    INTEGER_DIVISION_BY_ZERO = 7
    BAD_CONVERSION_TO_INTEGER = 8
    UNREACHABLE_CODE_REACHED = 9
    INTERRUPT = 10
    OUT_OF_FUEL = 11


# The C functions the request path calls that take a microsecond or less and never call back,
# through function pointers of our own that keep the GIL (ctypes.PyDLL). ctypes releases the
# GIL around every call of wasmtime-py's own: the pool's filler threads then took it, and
# the request's thread waited for them to give it back, once per call. Their argument and
# result types are wasmtime-py's; setting them here does not touch its pointers.
_held = ctypes.PyDLL(_b.dll._name)


def holding_gil(name: str, argtypes: list | None = None) -> ctypes._CFuncPtr:
    """The C function `name` called without releasing the GIL (only for short calls that
    never call back into Python: a callback would wait for the GIL this thread holds)."""
    wrapped = getattr(_b, f"_{name}")
    function = _held[name]
    function.restype = wrapped.restype
    function.argtypes = argtypes if argtypes is not None else wrapped.argtypes
    return function


# wasmtime-py's own calls to the short C functions that make and set up an instance (the
# store, its WASI context with its preopened directories, its epoch deadline, the exports)
# and that set a request's fuel and memory limit and read the fuel left, rerouted once for
# the process: a pool filler made each instance through ~15 of them, and
# after each it waited for the GIL the event loop's thread held (under one connection's load
# a make took 1.7 ms of wall time for 0.58 ms of CPU). Holding it through them, two gateways
# side by side (one process each, 2026-12-07, a noisy spell): requests a second higher in 13
# of 16 paired rounds of wrk, at 16 connections a median +26%. None calls back into Python.
_SHORT_CALLS = (
    "wasmtime_store_new", "wasmtime_store_context", "wasmtime_context_set_fuel",
    "wasmtime_context_set_epoch_deadline", "wasmtime_store_epoch_deadline_callback",
    "wasi_config_new", "wasi_config_set_stdout_custom", "wasi_config_set_stderr_custom",
    "wasi_config_preopen_dir", "wasmtime_context_set_wasi", "wasmtime_component_instance_get_func",
    "wasmtime_context_get_fuel", "wasmtime_store_limiter",
)
for _name in _SHORT_CALLS:
    setattr(_b, f"_{_name}", holding_gil(_name))


def trap_code(error: wasmtime.WasmtimeError) -> TrapCode | None:
    """The trap code behind a WasmtimeError raised by a call, if it is a trap with one."""
    code = ctypes.c_uint8()
    trap = ctypes.cast(error.ptr(), ctypes.POINTER(_ffi.wasm_trap_t))
    if not _b.wasmtime_trap_code(trap, ctypes.byref(code)):
        return None
    try:
        return TrapCode(code.value)
    except ValueError:
        return None


# Epoch-deadline callbacks: one C callback for the process; `data` is a key into this table.
EpochCheck = Callable[[], bool]  # returns True to keep running, False to trap
_checks: dict[int, EpochCheck] = {}
_keys = itertools.count(1)  # next() is atomic under the GIL
_CONTINUE = 0

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(_ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(_b.wasmtime_update_deadline_kind_t),
)
_FINALIZER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_CALLBACK_TYPE
def _on_epoch(_context, data, delta, kind):  # type: ignore[no-untyped-def]
    check = _checks.get(data or 0)
    if check is not None and check():
        delta[0] = 1
        kind[0] = _CONTINUE
        return 0
    error = _b.wasmtime_error_new(b"wasmgate: invocation interrupted")
    return ctypes.cast(error, ctypes.c_void_p).value


@_FINALIZER_TYPE
def _on_finalize(data):  # type: ignore[no-untyped-def]
    _checks.pop(data or 0, None)


def on_epoch_deadline(store: wasmtime.Store, check: EpochCheck) -> None:
    """Call `check` each time the store reaches its epoch deadline; trap when it says False.

    With a deadline of one tick, `check` runs once per engine tick while the guest executes.
    """
    key = next(_keys)
    _checks[key] = check
    _b.wasmtime_store_epoch_deadline_callback(store.ptr(), _on_epoch, key, _on_finalize)
