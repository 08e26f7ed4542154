"""Garbage collection of the bundle store: what no version names any more is removed.

A collection forgets each API's versions past `WASMGATE_VERSION_RETENTION` (the active one is
always kept), then removes from this host's store every bundle that no version names, that no
API serves here, and that no build made or reused within `WASMGATE_GC_GRACE_S` (a build's
bundle is in the store before its version is recorded); then the precompiled files, stored
sources and shared archives of what it removed, and the files precompiled for another engine
than this host's (a wasmtime upgrade leaves the old engine's behind). Deleted APIs' bundles go
the same way. Last, the precompiled files that can be restored from their deltas are trimmed
to `WASMGATE_COMPILED_CACHE_MB`, the least recently loaded first.
A running request always runs a bundle some API serves or a retained version names, so it
is never collected; a crash during collection loses nothing (runtime.bundle.BundleStore.collect).
It runs every `WASMGATE_GC_INTERVAL_S` in one process per host (the first run one interval
after start).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from gateway.state.deployments import Deployments

log = logging.getLogger("wasmgate.gateway")


@dataclass(frozen=True)
class Collected:
    versions_forgotten: int
    bundles_removed: list[str]


def collect(deployments: Deployments) -> Collected:
    settings, db = deployments.settings, deployments.db
    forgotten = db.prune_versions(settings.version_retention)
    referenced = db.referenced_bundles()

    def keep(bundle_hash: str) -> bool:
        return bundle_hash in referenced or bundle_hash in deployments.registry.live_bundles()

    removed = deployments.store.collect(keep, settings.gc_grace_s, deployments.runtime.engine.fingerprint)
    deployments.store.trim_compiled()
    for bundle_hash in removed:
        deployments.runtime.forget(bundle_hash)
    db.prune_unreferenced(set(removed))
    if forgotten or removed:
        log.info("store collected: %d old versions forgotten, %d bundles removed", forgotten, len(removed))
    return Collected(forgotten, removed)


class Collector:
    """Runs `collect` every `interval_s` in a background thread until stopped."""

    def __init__(self, deployments: Deployments, interval_s: float) -> None:
        self._deployments, self._interval_s = deployments, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-gc", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                collect(self._deployments)
            except Exception:
                log.exception("collecting the bundle store failed; trying again in %.0f s", self._interval_s)
