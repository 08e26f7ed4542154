"""The C calls the runtime makes without letting go of the GIL (runtime.capi)."""

from __future__ import annotations

import ctypes

import wasmtime
import wasmtime._bindings as _b

from runtime import capi
from runtime.engine import Engine, EngineConfig


def test_wasmtime_py_s_short_calls_keep_the_gil():
    """wasmtime-py's own calls to them go through pointers that keep the GIL, so that a
    filler making an instance does not wait for the GIL after each of them."""
    for name in capi._SHORT_CALLS:
        function = getattr(_b, f"_{name}")
        assert function._flags_ & ctypes._FUNCFLAG_PYTHONAPI, name
    wasi = wasmtime.WasiConfig()  # and wasmtime-py works through them as before
    wasi.preopen_dir(".", "/here", fs_mutable=False)
    engine = Engine(EngineConfig(slots=2))
    try:
        store = wasmtime.Store(engine.wasm)
        store.set_wasi(wasi)
        store.set_epoch_deadline(1)
        store.close()
    finally:
        engine.close()


def test_a_store_s_fuel_and_memory_limit_through_the_rerouted_calls():
    engine = Engine(EngineConfig(slots=2))
    try:
        store = wasmtime.Store(engine.wasm)
        store.set_fuel(123_456)
        assert store.get_fuel() == 123_456
        store.set_limits(memory_size=64 << 20)  # its effect: test_runtime_outcomes (memory limits)
        store.close()
    finally:
        engine.close()
