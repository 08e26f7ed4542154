"""The process-wide wasmtime engine, its fingerprint and the epoch ticker.

One engine per process: fuel metering and epoch interruption on, the default stack size
(a larger `max_wasm_stack` can abort the host process). A daemon thread advances the epoch
every TICK_SECONDS; each store asks to be checked at every tick (see runtime.capi).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import threading

import wasmtime

TICK_SECONDS = 0.01


def _config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    return config


def fingerprint() -> str:
    """Identifies what a precompiled artifact must match: wasmtime build, settings, CPU."""
    parts = [
        importlib.metadata.version("wasmtime"),
        platform.machine(),
        "fuel=1",
        "epoch=1",
        "opt=speed",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class Engine:
    """A wasmtime Engine plus the thread that advances its epoch."""

    def __init__(self) -> None:
        self.wasm = wasmtime.Engine(_config())
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
