"""The process-wide wasmtime engine, its fingerprint and the epoch ticker.

One engine per process: fuel metering and epoch interruption on, the default stack size
(a larger `max_wasm_stack` can abort the host process), and wasmtime's pooling instance
allocator: `EngineConfig.slots` instance slots reserved up front, each keeping the first
`keep_resident_bytes` of its linear memory resident between uses, so a new instance's first
call takes no page faults (measured: 2.4 ms call without, 1.1 ms with). The pooling
allocator and `wasmtime.Config` are joined through the C API (`wasmtime._bindings`), which
wasmtime-py does not wrap. On the pinned wasmtime build the pool also resets only the pages
an instance dirtied (wasmtime's `pagemap_scan`, see `_reset_dirty_pages_only`) instead of
copying all of `keep_resident_bytes` back. A daemon thread advances the epoch every
TICK_SECONDS; each store asks to be checked at every tick (see runtime.capi).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import platform
import threading
from dataclasses import dataclass

import wasmtime
import wasmtime._bindings as _b

TICK_SECONDS = 0.01
MIB = 1 << 20

# wasmtime's `PoolingAllocationConfig` as `wasmtime_pooling_allocation_config_new` lays it out
# in the build this project pins (read off its machine code in 50.0.1; 51.0.0's function is the
# same instructions): 0x88 bytes, the last fields max_unused_warm_slots (u32 at 0x80),
# memory_protection_keys (0x84), pagemap_scan (0x85), async_stack_zeroing (0x86). `Enabled` is
# Auto = 0, Yes = 1, No = 2.
_PAGEMAP_BUILD = ("51.0.0", "x86_64")
_CONFIG_SIZE = 0x88
_PAGEMAP_SCAN_OFFSET = 0x85
_DEFAULT_TAIL = bytes([100, 0, 0, 0, 2, 2, 0])  # 0x80..0x86 as `new` leaves them
_ENABLED_AUTO = 0


@dataclass(frozen=True)
class EngineConfig:
    """Sizes of the pooling allocator.

    slots: instances that may exist at once (pre-made, running and closing together);
        making one more waits for a slot (see runtime.instance_pool).
    max_memory_bytes: the largest linear memory any instance may grow to.
    keep_resident_bytes: memory kept resident per slot between uses; what an instance
        touches beyond it is faulted in again, at ~15 µs a page on this VM. An SDK app's
        memory image (~15 MiB) fits in 16 MiB; a FastAPI app's (20-30 MiB) needs 32: with
        16 its fresh instances cost 1.8x the CPU (18 against 10 ms, make + call + close,
        benchmarks/bench_fastapi.py). A slot keeps only the pages its instances touched, up
        to this (a memory bomb's slot: all of it).
    table_elements: the largest table (CPython's funcref table has ~5,700 entries).
    reset_dirty_pages_only: restore only the pages an instance wrote when its slot is reused
        (see `_reset_dirty_pages_only`); off, the whole kept-resident prefix is copied back.
    """

    slots: int = 32
    max_memory_bytes: int = 512 * MIB
    keep_resident_bytes: int = 32 * MIB
    table_elements: int = 20_000
    reset_dirty_pages_only: bool = True
    # A componentize-py component has 14 core modules, 1-2 memories and 4-5 tables.
    core_instances_per_component: int = 32
    memories_per_component: int = 4
    tables_per_component: int = 8



def _config(pool: EngineConfig) -> tuple[wasmtime.Config, bool]:
    """The engine's config, and whether slots reset only their dirtied pages."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    p = _b.wasmtime_pooling_allocation_config_new()
    try:
        _b.wasmtime_pooling_allocation_config_total_component_instances_set(p, pool.slots)
        _b.wasmtime_pooling_allocation_config_total_core_instances_set(p, pool.slots * pool.core_instances_per_component)
        _b.wasmtime_pooling_allocation_config_total_memories_set(p, pool.slots * pool.memories_per_component)
        _b.wasmtime_pooling_allocation_config_total_tables_set(p, pool.slots * pool.tables_per_component)
        _b.wasmtime_pooling_allocation_config_max_core_instances_per_component_set(p, pool.core_instances_per_component)
        _b.wasmtime_pooling_allocation_config_max_memories_per_component_set(p, pool.memories_per_component)
        _b.wasmtime_pooling_allocation_config_max_tables_per_component_set(p, pool.tables_per_component)
        _b.wasmtime_pooling_allocation_config_max_memory_size_set(p, pool.max_memory_bytes)
        _b.wasmtime_pooling_allocation_config_table_elements_set(p, pool.table_elements)
        _b.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(p, pool.keep_resident_bytes)
        _b.wasmtime_pooling_allocation_config_table_keep_resident_set(p, MIB)
        _b.wasmtime_pooling_allocation_config_max_core_instance_size_set(p, MIB)
        _b.wasmtime_pooling_allocation_config_max_component_instance_size_set(p, MIB)
        dirty_pages_only = pool.reset_dirty_pages_only and _reset_dirty_pages_only(p)
        _b.wasmtime_pooling_allocation_strategy_set(config.ptr(), p)
    finally:
        _b.wasmtime_pooling_allocation_config_delete(p)
    return config, dirty_pages_only


def pagemap_scan_settable() -> bool:
    """Whether this wasmtime build is the one whose config layout `_reset_dirty_pages_only` knows."""
    return (importlib.metadata.version("wasmtime"), platform.machine()) == _PAGEMAP_BUILD


def _reset_dirty_pages_only(pooling_config) -> bool:  # noqa: ANN001
    """Turn on wasmtime's `PoolingAllocationConfig::pagemap_scan(Enabled::Auto)`.

    Resetting a slot for its next instance then asks Linux (PAGEMAP_SCAN, kernel >= 6.7) which
    pages the last instance wrote and restores only those, instead of copying the whole
    kept-resident prefix back from the image (measured: that `memmove` was 15% of all CPU of a
    gateway under load; closing an instance 0.56 -> 0.39 ms). On older kernels `Auto` keeps the
    copy. Isolation stays wasmtime's: the pages restored are those the kernel saw written.

    The C API does not wrap this setting, so it is written into the config struct, but only for
    the exact build whose layout was read (`_PAGEMAP_BUILD`) and whose freshly made config shows
    the expected defaults around the field; anything else leaves the config untouched.
    """
    if not pagemap_scan_settable():
        return False
    raw = ctypes.cast(pooling_config, ctypes.POINTER(ctypes.c_uint8 * _CONFIG_SIZE)).contents
    if bytes(raw[0x80:0x87]) != _DEFAULT_TAIL:
        return False
    raw[_PAGEMAP_SCAN_OFFSET] = _ENABLED_AUTO
    return True


def fingerprint() -> str:
    """Identifies what a precompiled artifact must match: wasmtime build, settings, CPU."""
    parts = [
        importlib.metadata.version("wasmtime"),
        platform.machine(),
        "fuel=1",
        "epoch=1",
        "opt=speed",
        "alloc=pooling",  # pool sizes do not change compiled code; wasmtime checks the rest on load
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class Engine:
    """A wasmtime Engine plus the thread that advances its epoch."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        wasm_config, self.resets_dirty_pages_only = _config(self.config)
        self.wasm = wasmtime.Engine(wasm_config)
        self.fingerprint = fingerprint()
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="wasmgate-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            self.wasm.increment_epoch()

    def close(self) -> None:
        self._stopped.set()
        self._ticker.join()
