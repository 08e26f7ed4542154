"""Runs one request of a bundle in a fresh wasmtime instance and classifies how it ended.

`Runtime.invoke` is the whole API the gateway needs: it is thread-safe (each call has its own
Store; the Engine, Linker and loaded components are shared), and it never exposes instances.
Instances are never reused: each call takes a never-used one from the `InstancePool` (made
before the request arrived) or makes one inline when none is ready.

Loaded components are kept within a budget (`loaded_bytes`, each charged what its calls map:
its precompiled file, and its memory image once more where instances map it, counted as its
component's size, which is mostly that image): past it, the least recently used one is
dropped, which unmaps its file once no instance of it is left, so that an idle API costs
page cache, not the gateway's memory. Loading it again skips the ~30-50 ms of file checks
when its files are the ones checked before (same inode, size and mtime): ~3 ms; so does a
later process (after a restart) when the store's record of the files it found intact still
matches every file (`BundleStore.found_intact`).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Linker

from runtime import instance as inst, scratch
from runtime.bundle import MANIFEST, Bundle, BundleDamaged, BundleStore, layer_name
from runtime.engine import Engine, EngineConfig
from runtime.errors import SandboxError
from runtime.instance import FreshInstance, Loaded
from runtime.instance_pool import InstancePool, PoolBudget
from runtime.limits import Limits
from runtime.marshalling import SandboxRequest, SandboxResponse
from runtime.report import InvocationReport

HOST_INTERFACE = "wasmgate:sandbox/host@0.1.0"
MONOTONIC_CLOCK = "wasi:clocks/monotonic-clock@0.2.9"
SCRATCH = "instances"


@dataclass
class Invocation:
    response: SandboxResponse
    report: InvocationReport


def _define_host(linker: Linker) -> None:
    control = inst.current_control
    linker.add_wasip2()
    linker.allow_shadowing = True
    with linker.root() as root:
        with root.add_instance(HOST_INTERFACE) as host:
            host.add_func("sleep", lambda _store, nanos: control().sleep(nanos))
        with root.add_instance(MONOTONIC_CLOCK) as clock:
            clock.add_func("now", lambda _store: time.monotonic_ns())
            clock.add_func("resolution", lambda _store: 1)
            clock.add_func("subscribe-duration", lambda _store, nanos: control().refuse_wait(nanos))
            clock.add_func(
                "subscribe-instant", lambda _store, when: control().refuse_wait(max(0, when - time.monotonic_ns()))
            )


class Runtime:
    """Loads bundles and runs their requests, each in a never-used instance.

    `pool` sizes the pre-made instances (PoolBudget(ready=0, fillers=0): every instance is
    made inline); `concurrency` is how many calls may run at once (it sizes the engine's
    slots together with the pool); `max_memory_bytes` the largest memory limit a call may get;
    `resident_bytes` how much of each slot's memory stays resident between instances;
    `loaded_bytes` the budget of loaded components (the one loaded last is always kept).
    """

    def __init__(
        self,
        store: BundleStore,
        engine: Engine | None = None,
        pool: PoolBudget | None = None,
        concurrency: int = 8,
        max_memory_bytes: int = 512 << 20,
        resident_bytes: int = EngineConfig.keep_resident_bytes,
        loaded_bytes: int = 512 << 20,
    ) -> None:
        self.bundles = store
        budget = pool or PoolBudget()
        slots = budget.ready + 2 * concurrency + 4
        self.engine = engine or Engine(
            EngineConfig(slots=slots, max_memory_bytes=max_memory_bytes, keep_resident_bytes=resident_bytes)
        )
        # One linker per set of layers the loaded components import (in practice one per
        # toolchain); a linker is never changed once an instance may use it.
        self._linkers: dict[tuple[str, ...], Linker] = {}
        self._layers: dict[str, wasmtime.Module] = {}
        self.loaded_bytes = loaded_bytes
        self._components: dict[str, Loaded] = {}
        self._sizes: dict[str, int] = {}  # bundle hash -> bytes charged to the budget
        self._last_load: dict[str, int] = {}  # bundle hash -> when last asked for (a tick)
        self._ticks = itertools.count()
        # bundle hash -> the files (manifest, precompiled component) as they were when checked
        self._checked: dict[str, tuple] = {}
        self.unloads = 0
        # bundle hash -> (what the bundle directory was when it was found damaged, what is wrong)
        self._damaged: dict[str, tuple[tuple, str]] = {}
        self._load_lock = threading.Lock()
        self._stdlib: Path | None = None
        self._scratch = scratch.process_dir(store.root / SCRATCH)
        self._names = itertools.count()
        self._free_dirs: list[Path] = []  # empty request directories of closed instances
        self.pool = InstancePool(
            self._make_instance, min(slots, self.engine.config.slots), budget, lambda bundle: bundle.hash in self._components
        )
        self._finalizer = weakref.finalize(self, _shutdown, self.pool, self._scratch)

    # -- loading ---------------------------------------------------------------------------

    def load(self, bundle: Bundle) -> Loaded:
        """The bundle's component for this engine (precompiled once, then memory-mapped), with
        the exports the runtime calls.

        Raises BundleDamaged if the bundle's files are not the ones its manifest records; that
        is found once per process, not per call, until the bundle directory is replaced (by a
        build that repairs it).
        """
        key = bundle.hash
        self._last_load[key] = next(self._ticks)
        loaded = self._components.get(key)
        if loaded is None:
            self._raise_if_damaged(bundle)
            with self._load_lock:
                loaded = self._components.get(key)
                if loaded is None:
                    self._raise_if_damaged(bundle)
                    loaded = self._load_locked(bundle)
        return loaded

    def _load_locked(self, bundle: Bundle) -> Loaded:
        key = bundle.hash
        identity, compiled = _identity(bundle), self.bundles.compiled_path(bundle, self.engine.fingerprint)
        unchanged = self._checked.get(key) == (identity, _stat(compiled)) or self.bundles.found_intact(bundle, compiled)
        try:
            component = self.bundles.load_component(self.engine.wasm, self.engine.fingerprint, bundle, unchanged)
        except BundleDamaged as error:
            self._damaged[key] = (identity, error.detail)
            raise
        loaded = Loaded.of(component, self._linker_for(tuple(bundle.manifest.get("layers", []))))
        if not unchanged:  # checked whole just now: a restart need not hash it again
            self.bundles.record_intact(bundle, compiled)
        if self._stdlib is None:  # before publishing: callers that skip the lock need it
            self._stdlib = self.bundles.stdlib_dir()
        self._damaged.pop(key, None)
        compiled_now = _stat(compiled)  # written by this load if it had to compile
        self._checked[key] = (identity, compiled_now)
        self._sizes[key] = _charge(bundle, compiled_now)
        self._components[key] = loaded
        self._unload_over_budget(keep=key)
        return loaded

    def _linker_for(self, layers: tuple[str, ...]) -> Linker:
        """The linker (lock held) that defines the host and these layers, each a core module
        loaded and compiled once per process and shared by every component importing it."""
        linker = self._linkers.get(layers)
        if linker is None:
            modules = [self._layer(sha256) for sha256 in layers]
            linker = Linker(self.engine.wasm)
            _define_host(linker)
            with linker.root() as root:
                for sha256, module in zip(layers, modules):
                    root.add_module(layer_name(sha256), module)
            self._linkers[layers] = linker
        return linker

    def _layer(self, sha256: str) -> wasmtime.Module:
        module = self._layers.get(sha256)
        if module is None:
            module = self.bundles.load_layer(self.engine.wasm, self.engine.fingerprint, sha256)
            self._layers[sha256] = module
        return module

    def _unload_over_budget(self, keep: str) -> None:
        """Drop the least recently used components (lock held) until the rest fit the budget.
        An instance of a dropped one keeps its code mapped until it is closed."""
        while sum(self._sizes.values()) > self.loaded_bytes and len(self._components) > 1:
            coldest = min((k for k in self._components if k != keep), key=lambda k: self._last_load.get(k, -1))
            del self._components[coldest]
            del self._sizes[coldest]
            self.unloads += 1

    def loaded(self) -> dict[str, int]:
        """The components loaded now: how many, and the bytes charged to the budget."""
        with self._load_lock:
            return {"components": len(self._components), "bytes": sum(self._sizes.values()), "unloads": self.unloads}

    def damaged(self, bundle: Bundle) -> str | None:
        """What is wrong with `bundle`, if loading it found it damaged (None: not found so)."""
        known = self._damaged.get(bundle.hash)
        return known[1] if known is not None and known[0] == _identity(bundle) else None

    def _raise_if_damaged(self, bundle: Bundle) -> None:
        detail = self.damaged(bundle)
        if detail is not None:
            raise BundleDamaged(detail)  # a new error each time: a re-raised one keeps growing its traceback

    def check(self, bundle: Bundle) -> None:
        """Make sure `bundle` can run here (BundleDamaged if not) by loading it; or, once the
        budget of loaded components is full, by checking a bundle found intact before against
        its record, without loading it: a start with more APIs than the budget holds loaded
        each only to drop it again (~3.5 ms an API). Its first call then loads it unhashed.
        One whose precompiled file was trimmed is checked without restoring it, budget or not
        (~100 ms each, and each restore trims another file: a start with 1,000 APIs, ~810 of
        them trimmed, took 106-115 s that way): its first call restores it."""
        if not self._unchanged_past_budget(bundle):
            self.load(bundle)

    def serve(self, bundle: Bundle) -> None:
        """`bundle` is live: checked (see `check`), and the pool may keep instances of it ready
        once called. A damaged bundle keeps none: its calls answer BundleDamaged."""
        try:
            self.check(bundle)
        except BundleDamaged:
            return
        self.pool.activate(bundle)

    def _unchanged_past_budget(self, bundle: Bundle) -> bool:
        with self._load_lock:
            if bundle.hash in self._components:
                return False
            identity, compiled = _identity(bundle), self.bundles.compiled_path(bundle, self.engine.fingerprint)
            checked = (identity, _stat(compiled))
            if checked[1] is None:  # trimmed: checked, and restored by its first call; not compiled yet: loaded
                return self.bundles.restorable(bundle, self.engine.fingerprint) and self.bundles.intact(bundle)
            room = not self._components or sum(self._sizes.values()) + _charge(bundle, checked[1]) <= self.loaded_bytes
            if room:  # (the budget always keeps one)
                return False
            if self._checked.get(bundle.hash) != checked and not self.bundles.found_intact(bundle, compiled):
                return False
            self._checked[bundle.hash] = checked  # its first call loads it without hashing
            return True

    def drain(self, bundle_hash: str) -> None:
        """`bundle_hash` is no longer live: free its ready instances (running calls finish)."""
        self.pool.drain(bundle_hash)

    def forget(self, bundle_hash: str) -> None:
        """Drop a bundle that was removed from the store: its instances and its component."""
        self.pool.drain(bundle_hash)
        with self._load_lock:
            for known in (self._components, self._sizes, self._last_load, self._checked, self._damaged):
                known.pop(bundle_hash, None)

    # -- running ---------------------------------------------------------------------------

    def describe(self, bundle: Bundle) -> dict:
        """The route table the bundle's app declares."""
        instance, _ = self.pool.acquire(bundle, hot=False)
        try:
            return json.loads(instance.describe())
        finally:
            self.pool.release(instance)

    def invoke(
        self,
        bundle: Bundle,
        request: SandboxRequest,
        limits: Limits,
        cancel: threading.Event | None = None,
    ) -> Invocation:
        """Run `request` in a never-used instance. Raises a SandboxError subclass on any failure."""
        started = time.perf_counter()
        self.load(bundle)  # loaded (a lookup), or BundleDamaged before the pool counts it as demand
        instance, premade = self.pool.acquire(bundle)
        made_ms = 0.0 if premade else (time.perf_counter() - started) * 1000
        try:
            response, report = instance.run(request, limits, cancel)
        except SandboxError as error:
            _account(error.report, premade, made_ms)
            raise
        finally:
            self.pool.release(instance)
        _account(report, premade, made_ms)
        return Invocation(response, report)

    def close(self) -> None:
        """Close every held instance and stop the engine's threads."""
        self._finalizer()
        self.engine.close()

    def _make_instance(self, bundle: Bundle) -> FreshInstance:
        loaded = self.load(bundle)
        assert self._stdlib is not None
        try:
            request_dir = self._free_dirs.pop()
        except IndexError:
            request_dir = self._scratch / str(next(self._names))
            request_dir.mkdir()
        return FreshInstance(self.engine.wasm, loaded, bundle, self._stdlib, request_dir, self._free_dirs.append)


def _identity(bundle: Bundle) -> tuple:
    """Which bundle directory this is: its path and its manifest file (a rebuilt bundle is new)."""
    return (str(bundle.path), _stat(bundle.path / MANIFEST))


def _stat(path: Path) -> tuple | None:
    """Which file this is and whether it changed: inode, mtime and size (None: missing)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _charge(bundle: Bundle, compiled: tuple | None) -> int:
    """What a loaded component counts against the budget: its precompiled file (`_stat` of
    it), and its memory image again (about its component's size)."""
    return (compiled[-1] if compiled else 0) + bundle.manifest.get("component_bytes", 0)


def _account(report: InvocationReport, premade: bool, made_ms: float) -> None:
    report.premade = premade
    report.instantiate_ms = 0.0 if premade else report.instantiate_ms
    report.wall_ms = report.call_ms + made_ms


def _shutdown(pool: InstancePool, scratch: Path) -> None:
    pool.close()
    shutil.rmtree(scratch, ignore_errors=True)
