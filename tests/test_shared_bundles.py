"""Hosts sharing one PostgreSQL database serve each other's builds: a host that has never seen a
bundle fetches its archive from the database, installs it in its own store and compiles it once."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from gateway.http.app import create_app
from gateway.settings import Settings
from gateway.state.database import Database
from gateway_support import ADMIN, ADMIN_TOKEN, data_dir_sharing_store, deploy_request, gateway_sources  # noqa: F401
from postgres_support import postgres_url  # noqa: F401


def host(data_dir: Path, database_url: str | None = None) -> TestClient:
    settings = Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN, database_url=database_url, workers=1)
    return TestClient(create_app(settings))


def test_a_host_serves_what_another_built(gateway_sources, bundle_store, postgres_url, tmp_path):  # noqa: F811
    # Host A's store is the session's, so its builds are cache hits; host B starts with an empty store.
    with host(data_dir_sharing_store(tmp_path / "a", bundle_store), postgres_url) as a:
        created = a.post("/v1/apis", headers=ADMIN, **deploy_request("hello", gateway_sources["hello"]))
        assert created.status_code == 201, created.text
        api = created.json()
        updated = a.put(f"/v1/apis/{api['id']}", headers=ADMIN, **deploy_request("hello", gateway_sources["hello_v2"]))
        assert updated.status_code == 200, updated.text
    v1, v2 = (v["bundle_hash"] for v in updated.json()["versions"])

    store = tmp_path / "b" / "store"
    with host(tmp_path / "b", postgres_url) as b:
        # At start B loaded the active version, and only that one, from the database.
        assert (store / "bundles" / v2).is_dir() and not (store / "bundles" / v1).exists()
        layers = json.loads((store / "bundles" / v2 / "manifest.json").read_text())["layers"]
        assert layers and sorted(p.stem for p in (store / "layers").glob("*.wasm")) == sorted(layers)  # fetched with it
        assert len(list((store / "compiled").glob("*.cwasm"))) == 1 + len(layers)  # compiled once, at fetch
        run = f"/run/{api['id']}"
        key = {"X-API-Key": api["api_key"]}
        assert b.get(run + "/version", headers=key).json() == {"version": 2}

        # Activating a version B has never seen fetches it then.
        rolled = b.post(f"/v1/apis/{api['id']}/rollback", headers=ADMIN, json={"version": 1})
        assert rolled.status_code == 200, rolled.text
        assert (store / "bundles" / v1).is_dir()
        response = b.get(run + "/hello/x", headers=key)
        assert response.status_code == 200 and response.json() == {"message": "hello x"}
        assert b.get(run + "/version", headers=key).status_code == 404
    assert len(list((store / "compiled").glob("*.cwasm"))) == 2 + len(layers)  # the layers are shared


def test_a_single_host_on_sqlite_keeps_bundles_out_of_the_database(gateway_sources, bundle_store, tmp_path):
    data_dir = data_dir_sharing_store(tmp_path / "solo", bundle_store)
    with host(data_dir) as solo:
        created = solo.post("/v1/apis", headers=ADMIN, **deploy_request("hello", gateway_sources["hello"]))
        assert created.status_code == 201, created.text
    db = Database(data_dir / "wasmgate.db")
    try:
        assert not db.shared and not db.has_bundle_archive(created.json()["bundle_hash"])
    finally:
        db.close()
