"""Bundles travel between hosts as archives and arrive intact, or not at all."""

from __future__ import annotations

import pytest

from conftest import EXAMPLE
from runtime import BundleStore, Limits, Runtime, SandboxRequest
from runtime.bundle_archive import BadBundleArchive, pack, unpack


@pytest.fixture(scope="module")
def archive(build_app, bundle_store):
    bundle = build_app(EXAMPLE)
    return bundle, pack(bundle, bundle_store.compiled_artifacts(bundle))


def test_a_fresh_host_runs_a_fetched_bundle(archive, tmp_path):
    bundle, data = archive
    other_host = BundleStore(tmp_path / "store")
    fetched = unpack(data, other_host, bundle.hash)
    assert fetched.manifest == bundle.manifest
    assert len(other_host.compiled_artifacts(fetched)) == 1  # precompiled on the building host
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
