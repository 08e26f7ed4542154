"""Bundles built on a base are stored as deltas against its reference (runtime.references):
their component, and their precompiled file, which is then a cache that `trim_compiled` keeps
within a budget and a load restores. Nothing is lost: a removed file answers as before, and a
damaged delta or reference costs a compile, never a wrong file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from builder.build import build
from runtime import BundleStore, Limits, Runtime, SandboxRequest, bundle as bundle_module
from runtime.bundle import BundleDamaged
from runtime.bundle_archive import BadBundleArchive, pack, unpack

APP = "from wasmgate import App\napp = App()\n\n@app.get('/d')\ndef d():\n    return {{'delta': {n}}}\n"


@pytest.fixture(scope="module")
def three(bundle_store, runtime, tmp_path_factory):
    """Three SDK apps built on one base in the session's store."""
    built = []
    for n in range(3):
        source = tmp_path_factory.mktemp(f"delta{n}") / "app.py"
        source.write_text(APP.format(n=n))
        built.append(build(source, bundle_store, runtime=runtime).bundle)
    return built


def _private_store(bundle_store, bundles, root, budget=0):
    """A store of its own holding `bundles` with their precompiled files, deltas, references
    and layers (trimming the session's shared store would pull files from under other tests)."""
    store = BundleStore(root, budget)
    for bundle in bundles:
        shutil.copytree(bundle.path, store.root / "bundles" / bundle.hash)
        for path in bundle_store.compiled_dir.glob(f"{bundle.manifest['component_sha256']}-*"):
            if not path.name.endswith(".lock"):
                shutil.copy2(path, store.compiled_dir / path.name)
        for layer in bundle_store.layer_files(bundle):  # with its precompiled file: no 6 s compile
            shutil.copy2(layer, store.layers_dir / layer.name)
            for path in bundle_store.compiled_dir.glob(f"{layer.stem}-*.cwasm*"):
                shutil.copy2(path, store.compiled_dir / path.name)
        for path in bundle_store.compiled_dir.glob(f"{bundle.manifest['component_sha256']}-*.delta"):
            reference = path.read_bytes()[:64].decode()
            shutil.copy2(bundle_store.references.path(reference), store.references.path(reference))
        reference = bundle_store.component_reference(bundle)
        shutil.copy2(reference, store.references.path(reference.name))
    return store


def _call(runtime, bundle):
    return json.loads(runtime.invoke(bundle, SandboxRequest("GET", "/d"), Limits()).response.body)


def _compiled(store, runtime, bundle):
    return store.compiled_path(bundle, runtime.engine.fingerprint)


def test_a_bundle_built_on_a_base_stores_its_component_and_precompiled_file_as_small_deltas(
    bundle_store, runtime, three
):
    for bundle in three:
        assert bundle.manifest["component_reference"]
        assert bundle.component_path.stat().st_size < 1_000_000  # ~0.1 MB; ~6.5 MB compressed alone
        component = bundle_store.component_wasm(bundle)
        assert hashlib.sha256(component).hexdigest() == bundle.manifest["component_sha256"]
        compiled = _compiled(bundle_store, runtime, bundle)
        delta = compiled.with_name(compiled.name + ".delta")
        assert delta.stat().st_size < 1_000_000 < compiled.stat().st_size
    # one reference for all three: the base's
    assert len({bundle.manifest["component_reference"] for bundle in three}) == 1


def test_a_removed_precompiled_file_is_restored_from_its_delta_without_compiling(
    bundle_store, three, tmp_path, monkeypatch
):
    store = _private_store(bundle_store, three[:1], tmp_path / "store")
    runtime = Runtime(store)
    compiled = _compiled(store, runtime, three[0])
    expected = compiled.read_bytes()
    compiled.unlink()

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled, not restored")

    monkeypatch.setattr(bundle_module, "_compile", no_compiling)
    assert _call(runtime, store.get(three[0].hash)) == {"delta": 0}
    assert compiled.read_bytes() == expected


@pytest.mark.parametrize("damaged", ["delta", "reference"])
def test_a_damaged_delta_or_reference_costs_a_compile_never_a_wrong_file(bundle_store, three, tmp_path, damaged):
    store = _private_store(bundle_store, three[1:2], tmp_path / "store")
    runtime = Runtime(store)
    compiled = _compiled(store, runtime, three[1])
    expected = compiled.read_bytes()
    compiled.unlink()
    delta = compiled.with_name(compiled.name + ".delta")
    target = delta if damaged == "delta" else store.references.path(delta.read_bytes()[:64].decode())
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    assert _call(runtime, store.get(three[1].hash)) == {"delta": 1}
    assert compiled.read_bytes() == expected  # compiled again from the component


def test_trimming_removes_the_least_recently_loaded_restorable_files_down_to_the_budget(
    bundle_store, runtime, three, tmp_path
):
    store = _private_store(bundle_store, three, tmp_path / "store")
    files = [_compiled(store, runtime, bundle) for bundle in three]
    layers = sorted(path for path in store.compiled_dir.glob("*.cwasm") if path not in files)
    one = files[0].stat().st_size
    for age, path in zip((300, 100, 200), files):  # loaded 300, 100 and 200 s ago
        digest = path.with_name(path.name + ".sha256")
        os.utime(digest, (digest.stat().st_atime, digest.stat().st_mtime - age))
    assert BundleStore(store.root).trim_compiled() == []  # no budget: every file kept
    store.compiled_budget_bytes = int(1.5 * one)
    assert store.trim_compiled() == [files[0].name, files[2].name]
    assert [path.exists() for path in files] == [False, True, False]
    assert all(path.exists() for path in layers)  # a layer's file is never trimmed
    for path in files:
        assert path.with_name(path.name + ".delta").exists() and path.with_name(path.name + ".sha256").exists()
    own = Runtime(store)
    assert [_call(own, store.get(bundle.hash)) for bundle in three] == [{"delta": n} for n in range(3)]
    # each restore trimmed again: only the one loaded last is left
    assert [path.exists() for path in files] == [False, False, True]


def test_collection_keeps_the_references_in_use_and_removes_the_rest(bundle_store, three, tmp_path):
    store = _private_store(bundle_store, three, tmp_path / "store")
    references = sorted(path.name for path in store.references.dir.iterdir())
    assert len(references) == 2  # the base's component and its precompiled file
    store.collect(keep=lambda _hash: True, grace_s=0)
    assert sorted(path.name for path in store.references.dir.iterdir()) == references
    store.collect(keep=lambda bundle_hash: bundle_hash == three[2].hash, grace_s=0)
    assert sorted(path.name for path in store.references.dir.iterdir()) == references
    assert list(store.compiled_dir.glob(f"{three[0].manifest['component_sha256']}-*")) == []
    store.collect(keep=lambda _hash: False, grace_s=0)
    assert list(store.references.dir.iterdir()) == []
    assert list(store.compiled_dir.glob("*.delta")) == []


def test_an_archive_carries_the_reference_its_component_is_stored_against(bundle_store, three, tmp_path):
    bundle = three[2]
    archive = pack(bundle, [], bundle_store.layer_files(bundle), bundle_store.component_reference(bundle))
    other_host = BundleStore(tmp_path / "other")
    fetched = unpack(archive, other_host, bundle.hash)
    assert _call(Runtime(other_host), fetched) == {"delta": 2}  # compiled there from the component
    stripped = pack(bundle, [], bundle_store.layer_files(bundle))
    with pytest.raises(BadBundleArchive, match="lacks reference"):
        unpack(stripped, BundleStore(tmp_path / "third"), bundle.hash)


def test_a_start_checks_a_trimmed_bundle_without_restoring_it(bundle_store, three, tmp_path):
    store = _private_store(bundle_store, three[:2], tmp_path / "store")
    runtime = Runtime(store)  # room for both in its budget of loaded components
    first, trimmed = (store.get(bundle.hash) for bundle in three[:2])
    compiled = _compiled(store, runtime, trimmed)
    compiled.unlink()
    runtime.check(first)
    runtime.check(trimmed)  # checked, not loaded: a restore would trim another file
    assert not compiled.exists()
    assert _call(runtime, trimmed) == {"delta": 1}  # its first call restores it
    assert compiled.exists()
    source = next((trimmed.path / "python").rglob("*.py"))
    source.write_text(source.read_text() + "\n# changed on disk\n")
    runtime.forget(trimmed.hash)
    compiled.unlink()
    with pytest.raises(BundleDamaged):
        runtime.check(trimmed)  # a damaged one is loaded, and refused, at once
