"""Loaded components stay within their budget: the least recently used is dropped (its file
unmapped once no instance of it is left) and loads again, unchecked while its files are the
ones checked before, checked again once they changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from runtime import Limits, PoolBudget, Runtime, SandboxRequest

LIMITS = Limits(timeout_ms=10_000)
ONE_COMPONENT = 1  # bytes: any component is over it, so only the last one loaded stays


@pytest.fixture(scope="module")
def two(build_app):
    return build_app("fresh.py"), build_app("probe.py")


def call(runtime: Runtime, bundle, path: str) -> dict:
    invocation = runtime.invoke(bundle, SandboxRequest("GET", path), LIMITS)
    assert invocation.response.status == 200, invocation.response.body
    return json.loads(invocation.response.body)


@pytest.fixture
def one_loaded(bundle_store, two, monkeypatch):
    """A runtime with room for one loaded component, and the bundles whose files it checked
    (the store's records of bundles found intact by earlier runtimes removed: this one
    checks them as a process that never saw them would)."""
    for record in bundle_store.compiled_dir.glob("*.cwasm.checked"):
        record.unlink()
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=0, fillers=0), loaded_bytes=ONE_COMPONENT)
    checks = []
    verify = bundle_store.verify
    monkeypatch.setattr(bundle_store, "verify", lambda bundle: (checks.append(bundle.hash), verify(bundle)))
    yield runtime, checks
    runtime.close()


def test_past_the_budget_the_coldest_component_is_dropped_and_loads_again_unchecked(bundle_store, two, one_loaded):
    (fresh, probe), (runtime, checks) = two, one_loaded
    assert call(runtime, fresh, "/dirty")["calls"] == 1
    assert (runtime.loaded()["components"], runtime.loaded()["unloads"]) == (1, 0)
    assert checks == [fresh.hash]  # checked once, when first loaded
    call(runtime, probe, "/state")
    loaded = runtime.loaded()
    assert (loaded["components"], loaded["unloads"]) == (1, 1)
    # Charged its precompiled file and its memory image (counted as its component's size).
    compiled = bundle_store.compiled_path(probe, runtime.engine.fingerprint).stat().st_size
    assert loaded["bytes"] == compiled + probe.manifest["component_bytes"]
    assert call(runtime, fresh, "/dirty") == {"calls": 1, "seen_dirty_pages": 0, "grown": 1}
    assert runtime.loaded()["unloads"] == 2
    assert checks == [fresh.hash, probe.hash]  # loaded again without hashing its files


def test_a_component_whose_files_changed_is_checked_again_when_loaded_again(two, one_loaded):
    (fresh, probe), (runtime, checks) = two, one_loaded
    manifest = fresh.path / "manifest.json"
    stat = manifest.stat()
    try:
        call(runtime, fresh, "/dirty")
        call(runtime, probe, "/state")
        os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # the bundle was replaced
        assert call(runtime, fresh, "/dirty")["calls"] == 1
        assert checks == [fresh.hash, probe.hash, fresh.hash]
    finally:
        os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_serving_past_a_full_budget_checks_a_bundle_found_intact_before_without_loading_it(bundle_store, two, one_loaded):
    """What a start with more APIs than the budget holds does with each of the others: no
    load (that loaded each only to drop it), yet one that is damaged is still found."""
    (fresh, probe), (runtime, checks) = two, one_loaded
    for bundle in (fresh, probe):  # found intact before, by an earlier process
        earlier = Runtime(bundle_store, pool=PoolBudget(ready=0, fillers=0))
        earlier.load(bundle)
        earlier.close()
    checks.clear()
    runtime.serve(fresh)  # room for it: loaded
    runtime.serve(probe)  # the budget is full: checked against its record, not loaded
    assert runtime.loaded()["components"] == 1 and runtime.loaded()["unloads"] == 0 and checks == []
    assert call(runtime, probe, "/state")["calls"] == 1  # loaded by its first call, without hashing
    assert runtime.loaded()["unloads"] == 1 and checks == []

    manifest = fresh.path / "manifest.json"
    stat = manifest.stat()
    try:
        os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # no longer as recorded
        runtime.forget(fresh.hash)
        runtime.serve(fresh)  # the budget is full, but its files changed: loaded, so checked whole
        assert checks == [fresh.hash] and runtime.damaged(fresh) is None
    finally:
        os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_instance_made_before_its_component_was_dropped_still_answers(bundle_store, two):
    fresh, probe = two
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=1, depth=1, fillers=1, busy_s=0), loaded_bytes=ONE_COMPONENT)
    try:
        call(runtime, fresh, "/dirty")  # hot: the pool keeps one ready
        deadline = time.monotonic() + 60
        while runtime.pool.stats()["ready"] < 1:
            assert time.monotonic() < deadline, "the pool made no instance"
            time.sleep(0.02)
        call(runtime, probe, "/state")  # drops fresh's component; its ready instance stays
        hits = runtime.pool.stats()["hits"]
        assert call(runtime, fresh, "/dirty") == {"calls": 1, "seen_dirty_pages": 0, "grown": 1}
        assert runtime.pool.stats()["hits"] == hits + 1
    finally:
        runtime.close()


_MAPPINGS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from runtime import BundleStore, Limits, PoolBudget, Runtime, SandboxRequest
    store = BundleStore(Path(sys.argv[1]))
    runtime = Runtime(store, pool=PoolBudget(ready=0, fillers=0), loaded_bytes=1)
    files = {}
    for bundle_hash, path in zip(sys.argv[2:], ["/dirty", "/state"]):
        bundle = store.get(bundle_hash)
        assert runtime.invoke(bundle, SandboxRequest("GET", path), Limits()).response.status == 200
        files[bundle_hash] = str(store.compiled_path(bundle, runtime.engine.fingerprint))
    maps = Path("/proc/self/maps").read_text()
    print(json.dumps({h: f in maps for h, f in files.items()}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
def test_a_dropped_component_no_longer_maps_its_file(bundle_store, two):
    """In a process of its own (the session's runtime maps every test bundle): after two APIs
    were called with room for one, only the last one's precompiled file is mapped."""
    fresh, probe = two
    out = subprocess.run(
        [sys.executable, "-c", _MAPPINGS, str(bundle_store.root), fresh.hash, probe.hash],
        capture_output=True, text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {fresh.hash: False, probe.hash: True}
