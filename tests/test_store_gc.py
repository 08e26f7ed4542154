"""The bundle store's garbage collection: what no version names (deleted APIs, versions past
the retention count) is removed, never what is kept, served or just built; a crash during a
collection loses nothing.

The bundles here are stand-ins (a manifest and a file or two): collection reads nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from types import SimpleNamespace

import pytest

from gateway.state.database import Database
from gateway.state.records import ApiRow, KeyRow, VersionRow
from gateway.state.registry import Registry
from gateway.state.store_gc import collect
from runtime import BundleStore
from runtime import bundle as bundle_module

HOUR = 3600.0


def fake_bundle(
    store: BundleStore, name: str, age_s: float = 2 * HOUR, layers: tuple[str, ...] = (), base: str | None = None
) -> str:
    bundle_hash = name.ljust(64, "0")
    path = store.root / "bundles" / bundle_hash
    (path / "python" / "0").mkdir(parents=True)
    (path / "python" / "0" / "app.py").write_text(f"# {name}\n")
    component = f"c{name}".ljust(64, "0")
    manifest = {"bundle_hash": bundle_hash, "component_sha256": component, "layers": list(layers), "base": base}
    (path / "manifest.json").write_text(json.dumps(manifest))
    (store.compiled_dir / f"{component}-engine.cwasm").write_bytes(b"compiled " + name.encode())
    (store.compiled_dir / f"{component}-engine.cwasm.sha256").write_text("x")
    then = time.time() - age_s
    os.utime(path / "manifest.json", (then, then))
    os.utime(path, (then, then))
    return bundle_hash


def bundles(store: BundleStore) -> set[str]:
    return {p.name for p in (store.root / "bundles").iterdir()}


def compiled(store: BundleStore) -> set[str]:
    return {p.name.split("-", 1)[0][1:].rstrip("0") for p in store.compiled_dir.glob("*.cwasm")}


def test_collect_removes_only_what_is_not_kept_and_past_its_grace(tmp_path):
    store = BundleStore(tmp_path / "store")
    kept, old, fresh = (fake_bundle(store, n) for n in ("a1", "b2", "c3"))
    store.touch(fresh)  # reused by a build just now
    removed = store.collect(lambda h: h == kept, grace_s=HOUR)
    assert removed == [old]
    assert bundles(store) == {kept, fresh}
    assert compiled(store) == {"a1", "c3"}  # the removed bundle's precompiled file went with it
    assert (store.root / "bundles" / kept / "python" / "0" / "app.py").read_text() == "# a1\n"


def fake_layer(store: BundleStore, data: bytes, age_s: float = 2 * HOUR) -> str:
    sha256 = store.add_layer(data)
    (store.compiled_dir / f"{sha256}-engine.cwasm").write_bytes(b"compiled layer")
    then = time.time() - age_s
    for written in store.layers_dir.glob(f"{sha256}.*"):  # the layer and its mark of use
        os.utime(written, (then, then))
    return sha256


def test_layers_go_when_no_bundle_imports_them_and_not_before_their_grace(tmp_path):
    store = BundleStore(tmp_path / "store")
    shared, own, orphan = (fake_layer(store, data) for data in (b"libpython", b"only b2's", b"left by a deleted API"))
    in_flight = fake_layer(store, b"a build adds it before its bundle", age_s=0)
    kept = fake_bundle(store, "a1", layers=(shared,))
    fake_bundle(store, "b2", layers=(shared, own))
    store.collect(lambda h: h == kept, grace_s=HOUR)
    assert {p.stem for p in store.layers_dir.iterdir()} == {shared, in_flight}
    assert {p.name.split("-", 1)[0] for p in store.compiled_dir.glob("*.cwasm")} >= {shared, in_flight}
    assert not any(p.name.startswith((own, orphan)) for p in store.compiled_dir.iterdir())


def fake_base(store: BundleStore, key: str, age_s: float = 2 * HOUR) -> None:
    path = store.root / "bases" / key
    path.mkdir(parents=True)
    (path / "component.wasm").write_bytes(b"a snapshot without an app")
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_bases_go_when_no_bundle_was_built_from_them_and_not_before_their_grace(tmp_path):
    store = BundleStore(tmp_path / "store")
    for key, age_s in (("used", 2 * HOUR), ("orphan", 2 * HOUR), ("fresh", 0), ("deleted-apis", 2 * HOUR)):
        fake_base(store, key, age_s)
    kept = fake_bundle(store, "a1", base="used")
    fake_bundle(store, "b2", base="deleted-apis")
    store.collect(lambda h: h == kept, grace_s=HOUR)
    assert {p.name for p in (store.root / "bases").iterdir()} == {"used", "fresh"}
    assert not any(p.name.startswith("discard-") for p in store.root.iterdir())


def test_a_layer_a_build_uses_again_is_spared_and_its_file_left_as_it_was(tmp_path):
    store = BundleStore(tmp_path / "store")
    old = fake_layer(store, b"libpython, last built with hours ago")
    before = store.layer_path(old).stat()
    assert store.add_layer(b"libpython, last built with hours ago") == old  # a build reuses it
    store.collect(lambda h: False, grace_s=HOUR)  # its bundle is not stored yet
    after = store.layer_path(old).stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (before.st_ino, before.st_mtime_ns, before.st_ctime_ns)
    then = time.time() - 2 * HOUR
    os.utime(store.layers_dir / f"{old}.used", (then, then))  # and then no bundle came to import it
    store.collect(lambda h: False, grace_s=HOUR)
    assert list(store.layers_dir.iterdir()) == []


def test_files_precompiled_for_another_engine_go_once_past_their_grace(tmp_path):
    """A wasmtime upgrade changes the engine: what the old one compiled no process here can load."""
    store = BundleStore(tmp_path / "store")
    layer = fake_layer(store, b"libpython")
    kept = fake_bundle(store, "a1", layers=(layer,))  # its precompiled files are for "engine"
    component = json.loads((store.root / "bundles" / kept / "manifest.json").read_text())["component_sha256"]
    then = time.time() - 2 * HOUR
    for name, age in ((component, then), (layer, then), (component + "-new", None)):
        artifact = store.compiled_dir / (f"{name}.cwasm" if name.endswith("-new") else f"{name}-old.cwasm")
        artifact.write_bytes(b"compiled by another engine")
        if age is not None:
            os.utime(artifact, (age, age))
    (store.compiled_dir / f"{component}-old.cwasm.sha256").write_text("x")

    store.collect(lambda h: h == kept, grace_s=HOUR)  # not told the engine: every engine's stays
    assert len(list(store.compiled_dir.glob("*.cwasm"))) == 5
    store.collect(lambda h: h == kept, grace_s=HOUR, engine_fingerprint="new")
    left = sorted(p.name.removeprefix(component).removeprefix(layer) for p in store.compiled_dir.iterdir())
    # This engine's file stays; the other engines' older than the grace go with their digests;
    # "engine" (fake_bundle's and fake_layer's, written just now) is within its grace.
    assert left == ["-engine.cwasm", "-engine.cwasm", "-engine.cwasm.sha256", "-new.cwasm"]


def test_keep_is_asked_again_right_before_a_removal(tmp_path):
    store = BundleStore(tmp_path / "store")
    target = fake_bundle(store, "d4")
    answers = iter([False, True])  # not needed at first; a version names it by the time it would go
    assert store.collect(lambda h: next(answers), grace_s=HOUR) == []
    assert bundles(store) == {target}


def test_a_crash_during_collection_loses_nothing(tmp_path, monkeypatch):
    store = BundleStore(tmp_path / "store")
    kept = fake_bundle(store, "e5")
    fake_bundle(store, "f6")  # nothing names it: collected

    def die(*args, **kwargs):
        raise SystemExit("killed while deleting")

    monkeypatch.setattr(bundle_module.shutil, "rmtree", die)
    with pytest.raises(SystemExit):
        store.collect(lambda h: h == kept, grace_s=HOUR)
    monkeypatch.undo()
    # The bundle left bundles/ whole, in one rename; the kept one is untouched.
    assert bundles(store) == {kept}
    assert (store.root / "bundles" / kept / "python" / "0" / "app.py").read_text() == "# e5\n"
    leftovers = [p for p in store.root.iterdir() if p.name.startswith("discard-")]
    assert len(leftovers) == 1 and (leftovers[0] / "manifest.json").is_file()
    # What the dead process left is cleared at the next start.
    leftovers[0].rename(store.root / "discard-999999999-dead")
    assert store.remove_leftovers() == ["discard-999999999-dead"]
    assert store.get(kept).hash == kept


def _version(number: int, bundle_hash: str) -> VersionRow:
    return VersionRow(number, bundle_hash, {"memory_mb": 64}, None, "app.py", [], time.time(), source_digest=f"s{number}")


def test_collection_follows_versions_retention_deleted_apis_and_what_is_served(tmp_path):
    store = BundleStore(tmp_path / "store")
    db = Database(tmp_path / "wasmgate.db")
    v = [fake_bundle(store, f"v{n}") for n in range(1, 5)]
    gone_api, served, stray = fake_bundle(store, "x1"), fake_bundle(store, "y1"), fake_bundle(store, "z1")
    now = time.time()
    db.create_api(ApiRow("api1", "one", 1, False, now, now), _version(1, v[0]), KeyRow("k1", "api1", "d", now))
    for n in (2, 3, 4):
        db.put_source(f"s{n}", b"source")
        db.add_version("api1", _version(n, v[n - 1]), "one", False)
    db.set_active_version("api1", 2)  # rolled back: version 2 must stay, whatever its age
    db.put_source("s1", b"source")
    db.put_source("orphan", b"nobody's")
    db.create_api(ApiRow("api2", "two", 1, False, now, now), _version(1, gone_api), KeyRow("k2", "api2", "d", now))
    db.delete_api("api2")
    registry = Registry()
    registry._users[served] = 1  # an API on this host serves it (e.g. a version another host prunes)
    forgotten_hashes: list[str] = []
    deployments = SimpleNamespace(
        settings=SimpleNamespace(version_retention=1, gc_grace_s=HOUR),
        db=db, store=store, registry=registry,
        runtime=SimpleNamespace(forget=forgotten_hashes.append, engine=SimpleNamespace(fingerprint="engine")),
    )
    result = collect(deployments)
    assert result.versions_forgotten == 2  # versions 1 and 3; 2 is active, 4 the latest
    assert [row.version for row in db.versions("api1")] == [2, 4]
    assert bundles(store) == {v[1], v[3], served}
    assert sorted(result.bundles_removed) == sorted([v[0], v[2], gone_api, stray])
    assert sorted(forgotten_hashes) == sorted(result.bundles_removed)
    assert db.get_source("orphan") is None and db.get_source("s1") is None
    assert db.get_source("s2") == b"source" and db.get_source("s4") == b"source"
    assert collect(deployments).bundles_removed == []  # nothing more to do
    db.close()
    shutil.rmtree(tmp_path / "store")
