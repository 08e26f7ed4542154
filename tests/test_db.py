"""The metadata store's contract, on SQLite and on PostgreSQL alike, and its migrations."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from gateway.state.database import Database, NameTaken
from gateway.state.records import ApiRow, InvocationRow, KeyRow, VersionRow
from gateway.state.schema import metadata
from postgres_support import postgres_url  # noqa: F401

HEAD = "0004"
TABLES = {"apis", "versions", "api_keys", "invocations", "usage", "bundle_archives", "key_usage", "alembic_version", "accounts", "account_tokens", "sources"}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str | Path:
    """Where a Database goes: a SQLite file, or a fresh PostgreSQL database."""
    return tmp_path / "data" / "wasmgate.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def db(db_url):
    database = Database(db_url, log_retention=3)
    yield database
    database.close()


def version_row(number: int = 1, created_at: float = 1_700_000_000.123456) -> VersionRow:
    return VersionRow(
        version=number,
        bundle_hash=f"{number:064x}",
        limits={"memory_mb": 128, "fuel": 50_000_000_000, "timeout_ms": 2000},
        rate_limit={"requests": 10, "per_seconds": 1.5},
        source_name="app.py",
        requirements=["attrs==23.2.0"],
        created_at=created_at,
    )


def create(db: Database, api_id: str, name: str, at: float = 1_700_000_000.0) -> ApiRow:
    api = ApiRow(api_id, name, 1, False, at, at)
    db.create_api(api, version_row(created_at=at), KeyRow(f"k-{api_id}", api_id, f"digest-{api_id}", at))
    return api


def call(api_id: str, at: float, outcome: str = "OK", n: int = 0) -> InvocationRow:
    return InvocationRow(
        api_id=api_id, time=at, request_id=f"r{n}", version=1, method="GET", path=f"/p/{n}", route="/p/{x}",
        status=200 if outcome == "OK" else 500, outcome=outcome, fuel_used=10_000_000_000 + n, duration_ms=1.25,
        bytes_in=3, bytes_out=5, stdout=f"out {n}", stderr="", logs_truncated=n % 2 == 1, error_detail="",
    )


def test_apis_and_versions(db):
    first, second = create(db, "a1", "alpha", at=100.0), create(db, "a2", "beta", at=200.0)
    assert db.list_apis() == [first, second]
    assert db.get_api("a1") == first and db.api_by_name("beta") == second
    assert db.get_api("nope") is None and db.api_by_name("nope") is None
    assert db.versions("a1") == [version_row(created_at=100.0)]

    assert db.add_version("a1", version_row(created_at=300.5), "alpha2", True) == 2
    api = db.get_api("a1")
    assert (api.name, api.active_version, api.private, api.updated_at) == ("alpha2", 2, True, 300.5)
    assert db.version("a1", 2) == replace(version_row(created_at=300.5), version=2)  # numbered by the store
    assert db.add_version("gone", version_row(), "x", False) is None

    assert db.set_active_version("a1", 1) and db.get_api("a1").active_version == 1
    assert not db.set_active_version("a1", 7) and not db.set_active_version("gone", 1)

    assert db.delete_api("a1") and not db.delete_api("a1")
    assert db.versions("a1") == [] and db.keys("a1") == []  # cascaded
    assert db.list_apis() == [second]


def test_names_are_unique(db):
    create(db, "a1", "alpha")
    with pytest.raises(NameTaken):
        create(db, "a2", "alpha")
    assert db.get_api("a2") is None and db.keys("a2") == []  # nothing of the failed create stays
    create(db, "a2", "beta")
    with pytest.raises(NameTaken):
        db.add_version("a2", version_row(), "alpha", False)
    assert [v.version for v in db.versions("a2")] == [1] and db.get_api("a2").name == "beta"


def test_hosts_updating_one_api_at_once_get_consecutive_versions(db, db_url):
    create(db, "a1", "alpha")
    other_host = Database(db_url)
    barrier = threading.Barrier(4)
    numbers: list[int | None] = []

    def update(host: Database) -> None:
        barrier.wait()
        numbers.append(host.add_version("a1", version_row(), "alpha", False))

    threads = [threading.Thread(target=update, args=(host,)) for host in (db, other_host, db, other_host)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    other_host.close()
    assert sorted(numbers) == [2, 3, 4, 5] and db.get_api("a1").active_version == 5


def test_keys_and_revocation(db):
    create(db, "a1", "alpha", at=100.0)
    create(db, "a2", "beta", at=100.0)
    assert db.add_key(KeyRow("k2", "a1", "digest-2", 150.0))
    assert not db.add_key(KeyRow("k3", "gone", "digest-3", 150.0))
    assert [k.id for k in db.keys("a1")] == ["k-a1", "k2"]
    assert {k.id for k in db.keys()} == {"k-a1", "k2", "k-a2"}
    assert db.keys("a1")[1] == KeyRow("k2", "a1", "digest-2", 150.0)
    assert db.revoke_key("a1", "k2") and not db.revoke_key("a1", "k2")
    assert not db.revoke_key("a2", "k-a1")  # another API's key
    assert [k.id for k in db.keys("a1")] == ["k-a1"]


def test_logs_keep_the_latest_entries(db):
    create(db, "a1", "alpha")
    create(db, "a2", "beta")
    for n in range(5):
        db.record([call("a1", 1_700_000_000.0 + n, n=n)])
    db.record([call("a2", 1_700_000_000.0, n=9)])
    logs = db.logs("a1", limit=10)
    assert [row["request_id"] for row in logs] == ["r4", "r3", "r2"]  # log_retention=3
    assert logs[0]["fuel_used"] == 10_000_000_004 and logs[0]["stdout"] == "out 4"
    assert [row["logs_truncated"] for row in logs] == [False, True, False]
    assert [row["request_id"] for row in db.logs("a1", limit=1)] == ["r4"]
    assert [row["request_id"] for row in db.logs("a2", limit=10)] == ["r9"]  # another API's retention
    db.record([call("gone", 1_700_000_000.0)])  # deleted while the call ran: dropped quietly


def test_usage_adds_up_per_hour_and_outcome(db):
    create(db, "a1", "alpha")
    hour = 1_700_000_000 // 3600 * 3600
    for at, outcome in [(hour + 1, "OK"), (hour + 3599, "OK"), (hour + 10, "SANDBOX_ERROR"), (hour + 3600, "OK")]:
        db.record([call("a1", at, outcome)])
    assert db.usage("a1") == [
        {"hour": hour, "outcome": "OK", "requests": 2, "fuel": 20_000_000_000, "bytes_in": 6, "bytes_out": 10,
         "duration_ms": 2.5},
        {"hour": hour, "outcome": "SANDBOX_ERROR", "requests": 1, "fuel": 10_000_000_000, "bytes_in": 3,
         "bytes_out": 5, "duration_ms": 1.25},
        {"hour": hour + 3600, "outcome": "OK", "requests": 1, "fuel": 10_000_000_000, "bytes_in": 3,
         "bytes_out": 5, "duration_ms": 1.25},
    ]
    assert db.usage("other") == []


def test_bundle_archives(db):
    assert db.get_bundle_archive("h1") is None and not db.has_bundle_archive("h1")
    data = bytes(range(256)) * 1000
    db.put_bundle_archive("h1", data)
    db.put_bundle_archive("h1", b"ignored: archives are content-addressed")
    assert db.has_bundle_archive("h1") and db.get_bundle_archive("h1") == data


def test_migrating_again_is_a_no_op(db_url):
    first = Database(db_url)
    create(first, "a1", "alpha")
    first.close()
    again = Database(db_url)
    assert [api.id for api in again.list_apis()] == ["a1"]
    assert _revision(again) == HEAD
    again.close()


def test_the_code_matches_the_migrated_schema(db):
    with db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == TABLES
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_hosts_starting_together_migrate_one_at_a_time(postgres_url):  # noqa: F811
    barrier = threading.Barrier(4)
    opened: list[Database] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(Database(postgres_url))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start, daemon=True) for _ in range(barrier.parties)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a migration hung"
    assert errors == [] and len(opened) == barrier.parties
    assert {_revision(db) for db in opened} == {HEAD}
    for db in opened:
        db.close()


def test_a_data_dir_from_before_migrations_upgrades_in_place(tmp_path):
    path = tmp_path / "wasmgate.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute("INSERT INTO apis VALUES ('a1', 'alpha', 1, 1, 100.0, 100.5)")
        conn.execute(
            "INSERT INTO versions VALUES ('a1', 1, 'h', '{\"fuel\": 5}', NULL, 'app.py', '[]', 100.0)"
        )
        conn.execute("INSERT INTO api_keys VALUES ('k1', 'a1', 'd', 100.0, NULL)")
        conn.execute(
            "INSERT INTO invocations (api_id, time, request_id, version, method, path, route, status, outcome,"
            " fuel_used, duration_ms, bytes_in, bytes_out, stdout, stderr, logs_truncated, error_detail)"
            " VALUES ('a1', 7200.5, 'r1', 1, 'GET', '/', NULL, 200, 'OK', 9, 1.5, 1, 2, 'o', 'e', 0, '')"
        )
        conn.execute("INSERT INTO usage VALUES ('a1', 7200, 'OK', 1, 9, 1, 2, 1.5)")
        conn.execute("PRAGMA user_version=1")
    conn.close()

    db = Database(path, log_retention=3)
    assert db.list_apis() == [ApiRow("a1", "alpha", 1, True, 100.0, 100.5)]
    assert db.version("a1", 1).limits == {"fuel": 5} and db.version("a1", 1).rate_limit is None
    assert db.keys() == [KeyRow("k1", "a1", "d", 100.0)]
    assert [row["request_id"] for row in db.logs("a1", 10)] == ["r1"]
    db.record([call("a1", 7300.0)])
    assert db.usage("a1")[0]["requests"] == 2 and db.logs("a1", 10)[0]["id"] == 2
    assert _revision(db) == HEAD and not db.has_bundle_archive("h")
    db.close()


def _revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# The schema as gateway/db.py created it before migrations, verbatim.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS apis (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    active_version INTEGER NOT NULL,
    private INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    api_id TEXT NOT NULL REFERENCES apis(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    bundle_hash TEXT NOT NULL,
    limits TEXT NOT NULL,
    rate_limit TEXT,
    source_name TEXT NOT NULL,
    requirements TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (api_id, version)
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    api_id TEXT NOT NULL REFERENCES apis(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_by_api ON api_keys (api_id);
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    api_id TEXT NOT NULL REFERENCES apis(id) ON DELETE CASCADE,
    time REAL NOT NULL,
    request_id TEXT NOT NULL,
    version INTEGER,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    route TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    fuel_used INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    stdout TEXT NOT NULL,
    stderr TEXT NOT NULL,
    logs_truncated INTEGER NOT NULL,
    error_detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invocations_by_api ON invocations (api_id, id);
CREATE TABLE IF NOT EXISTS usage (
    api_id TEXT NOT NULL REFERENCES apis(id) ON DELETE CASCADE,
    hour INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    requests INTEGER NOT NULL,
    fuel INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    PRIMARY KEY (api_id, hour, outcome)
);
"""
