"""Bundles travel between hosts as archives and arrive intact, or not at all."""

from __future__ import annotations

import pytest

import runtime.bundle as bundle_module
from conftest import EXAMPLE
from runtime import BundleStore, Limits, Runtime, SandboxRequest
from runtime.bundle_archive import BadBundleArchive, pack, unpack


@pytest.fixture(scope="module")
def archive(build_app, bundle_store):
    bundle = build_app(EXAMPLE)
    return bundle, pack(bundle, bundle_store.compiled_artifacts(bundle), bundle_store.layer_files(bundle),
                        bundle_store.component_reference(bundle))


def test_a_fresh_host_runs_a_fetched_bundle_compiling_nothing(archive, tmp_path, monkeypatch):
    bundle, data = archive
    other_host = BundleStore(tmp_path / "store")
    fetched = unpack(data, other_host, bundle.hash)
    assert fetched.manifest == bundle.manifest
    # Precompiled on the building host: the component and each layer (libpython's compile is
    # ~6 s of CPU, which held a host's first fetch past the hosts' staging bound under load).
    assert len(other_host.compiled_artifacts(fetched)) == 1 + len(fetched.manifest["layers"])
    monkeypatch.setattr(bundle_module, "_compile", lambda *args: pytest.fail(f"compiled {args[1].name} again"))
    assert fetched.manifest["layers"] and [p.is_file() for p in other_host.layer_files(fetched)] == [True] * len(
        fetched.manifest["layers"]
    )
    assert not (fetched.path / "layers").exists()  # the layers went to the store, not the bundle
    runtime = Runtime(other_host)
    try:
        response = runtime.invoke(fetched, SandboxRequest("GET", "/hello/x"), Limits()).response
    finally:
        runtime.close()
    assert response.body == b'{"message":"hello x"}'
    assert unpack(data, other_host, bundle.hash).path == fetched.path  # second fetch: no-op


def test_archive_for_another_hash_is_refused(archive, tmp_path):
    _, data = archive
    store = BundleStore(tmp_path / "store")
    with pytest.raises(BadBundleArchive, match="not"):
        unpack(data, store, "0" * 64)
    assert list((store.root / "bundles").iterdir()) == []


def test_corrupt_archive_is_refused(archive, tmp_path):
    bundle, data = archive
    store = BundleStore(tmp_path / "store")
    with pytest.raises(BadBundleArchive):
        unpack(data[: len(data) // 2], store, bundle.hash)
    assert [p.name for p in store.root.iterdir() if p.name.startswith("fetch-")] == []


def test_archive_without_the_layers_its_bundle_imports_is_refused(build_app, bundle_store, tmp_path):
    bundle = build_app(EXAMPLE)
    store = BundleStore(tmp_path / "store")
    with pytest.raises(BadBundleArchive, match="lacks layer"):
        unpack(pack(bundle), store, bundle.hash)
    assert list((store.root / "bundles").iterdir()) == []


def test_archive_with_a_tampered_layer_is_refused(build_app, bundle_store, tmp_path):
    bundle = build_app(EXAMPLE)
    tampered = tmp_path / "layers"
    tampered.mkdir()
    layers = []
    for layer in bundle_store.layer_files(bundle):
        copy = tampered / layer.name
        copy.write_bytes(layer.read_bytes()[:-1] + b"\0")
        layers.append(copy)
    store = BundleStore(tmp_path / "store")
    with pytest.raises(BadBundleArchive, match="does not match its sha256"):
        unpack(pack(bundle, layers=layers), store, bundle.hash)
    assert list(store.layers_dir.iterdir()) == []
