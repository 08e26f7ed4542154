"""Metadata in SQLite (WAL): APIs, versions, API keys, invocation logs, hourly usage.

All SQL lives in this module, behind `Database`. One connection serves every thread under
a lock; each call is short, and callers on the event loop run it in a worker thread. A
write that answers a deploy is committed before the caller answers, so `kill -9` loses
nothing accepted (WAL with synchronous=NORMAL survives a process crash).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1

_SCHEMA = """
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


class NameTaken(Exception):
    """Another API already has this name."""


@dataclass(frozen=True)
class VersionRow:
    version: int
    bundle_hash: str
    limits: dict[str, int]
    rate_limit: dict[str, float] | None
    source_name: str
    requirements: list[str]
    created_at: float


@dataclass(frozen=True)
class ApiRow:
    id: str
    name: str
    active_version: int
    private: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class KeyRow:
    id: str
    api_id: str
    digest: str
    created_at: float


@dataclass(frozen=True)
class InvocationRow:
    api_id: str
    time: float
    request_id: str
    version: int | None
    method: str
    path: str
    route: str | None
    status: int
    outcome: str
    fuel_used: int = 0
    duration_ms: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    stdout: str = ""
    stderr: str = ""
    logs_truncated: bool = False
    error_detail: str = ""


class Database:
    def __init__(self, path: Path, log_retention: int = 1000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_retention = log_retention
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def ping(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1").fetchone()[0] == 1

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- APIs and versions ----------------------------------------------------------------

    def create_api(self, api: ApiRow, version: VersionRow, key: KeyRow) -> None:
        """The API, its first version and its first key, in one transaction."""
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO apis (id, name, active_version, private, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (api.id, api.name, version.version, int(api.private), api.created_at, api.updated_at),
                )
                _insert_version(conn, api.id, version)
                _insert_key(conn, key)
        except sqlite3.IntegrityError as error:
            if "apis.name" in str(error):
                raise NameTaken(api.name) from None
            raise

    def add_version(self, api_id: str, version: VersionRow, name: str, private: bool) -> int | None:
        """Store the next version and make it active; its number, or None if the API is gone."""
        try:
            with self._write() as conn:
                row = conn.execute("SELECT MAX(version) FROM versions WHERE api_id = ?", (api_id,)).fetchone()
                if row[0] is None:
                    return None
                number = row[0] + 1
                _insert_version(conn, api_id, replace(version, version=number))
                conn.execute(
                    "UPDATE apis SET active_version = ?, name = ?, private = ?, updated_at = ? WHERE id = ?",
                    (number, name, int(private), version.created_at, api_id),
                )
                return number
        except sqlite3.IntegrityError as error:
            if "apis.name" in str(error):
                raise NameTaken(name) from None
            raise

    def set_active_version(self, api_id: str, version: int) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE apis SET active_version = ?, updated_at = ? WHERE id = ?"
                " AND EXISTS (SELECT 1 FROM versions WHERE api_id = ? AND version = ?)",
                (version, time.time(), api_id, api_id, version),
            )
            return cursor.rowcount == 1

    def delete_api(self, api_id: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM apis WHERE id = ?", (api_id,)).rowcount == 1

    def get_api(self, api_id: str) -> ApiRow | None:
        rows = self._query("SELECT * FROM apis WHERE id = ?", (api_id,))
        return _api(rows[0]) if rows else None

    def api_by_name(self, name: str) -> ApiRow | None:
        rows = self._query("SELECT * FROM apis WHERE name = ?", (name,))
        return _api(rows[0]) if rows else None

    def list_apis(self) -> list[ApiRow]:
        return [_api(row) for row in self._query("SELECT * FROM apis ORDER BY created_at, id")]

    def versions(self, api_id: str) -> list[VersionRow]:
        rows = self._query("SELECT * FROM versions WHERE api_id = ? ORDER BY version", (api_id,))
        return [_version(row) for row in rows]

    def version(self, api_id: str, version: int) -> VersionRow | None:
        rows = self._query("SELECT * FROM versions WHERE api_id = ? AND version = ?", (api_id, version))
        return _version(rows[0]) if rows else None

    # -- API keys ---------------------------------------------------------------------------

    def add_key(self, key: KeyRow) -> bool:
        """False if the API no longer exists."""
        try:
            with self._write() as conn:
                _insert_key(conn, key)
            return True
        except sqlite3.IntegrityError:
            return False

    def keys(self, api_id: str | None = None) -> list[KeyRow]:
        """Keys that are not revoked, of one API or of all."""
        sql = "SELECT id, api_id, digest, created_at FROM api_keys WHERE revoked_at IS NULL"
        args: tuple = ()
        if api_id is not None:
            sql, args = sql + " AND api_id = ?", (api_id,)
        return [KeyRow(**dict(row)) for row in self._query(sql + " ORDER BY created_at, id", args)]

    def revoke_key(self, api_id: str, key_id: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND api_id = ? AND revoked_at IS NULL",
                (time.time(), key_id, api_id),
            )
            return cursor.rowcount == 1

    # -- invocations --------------------------------------------------------------------------

    def record(self, entry: InvocationRow) -> None:
        """Log one call, add it to its hour's usage, and keep only the latest log entries."""
        hour = int(entry.time // 3600 * 3600)
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO invocations (api_id, time, request_id, version, method, path, route, status,"
                    " outcome, fuel_used, duration_ms, bytes_in, bytes_out, stdout, stderr, logs_truncated,"
                    " error_detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.api_id, entry.time, entry.request_id, entry.version, entry.method, entry.path,
                        entry.route, entry.status, entry.outcome, entry.fuel_used, entry.duration_ms,
                        entry.bytes_in, entry.bytes_out, entry.stdout, entry.stderr, int(entry.logs_truncated),
                        entry.error_detail,
                    ),
                )
                conn.execute(
                    "INSERT INTO usage (api_id, hour, outcome, requests, fuel, bytes_in, bytes_out, duration_ms)"
                    " VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT (api_id, hour, outcome) DO UPDATE SET"
                    " requests = requests + 1, fuel = fuel + excluded.fuel,"
                    " bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out,"
                    " duration_ms = duration_ms + excluded.duration_ms",
                    (entry.api_id, hour, entry.outcome, entry.fuel_used, entry.bytes_in, entry.bytes_out,
                     entry.duration_ms),
                )
                conn.execute(
                    "DELETE FROM invocations WHERE api_id = ? AND id <= (SELECT id FROM invocations"
                    " WHERE api_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (entry.api_id, entry.api_id, self.log_retention),
                )
        except sqlite3.IntegrityError:
            pass  # the API was deleted while the call ran: nothing to log it under

    def logs(self, api_id: str, limit: int) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT * FROM invocations WHERE api_id = ? ORDER BY id DESC LIMIT ?", (api_id, limit)
        )
        return [dict(row) for row in rows]

    def usage(self, api_id: str) -> list[dict[str, Any]]:
        """One row per (hour, outcome), oldest hour first."""
        rows = self._query(
            "SELECT hour, outcome, requests, fuel, bytes_in, bytes_out, duration_ms FROM usage"
            " WHERE api_id = ? ORDER BY hour, outcome",
            (api_id,),
        )
        return [dict(row) for row in rows]


def _insert_version(conn: sqlite3.Connection, api_id: str, v: VersionRow) -> None:
    conn.execute(
        "INSERT INTO versions (api_id, version, bundle_hash, limits, rate_limit, source_name, requirements,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            api_id, v.version, v.bundle_hash, json.dumps(v.limits),
            None if v.rate_limit is None else json.dumps(v.rate_limit),
            v.source_name, json.dumps(v.requirements), v.created_at,
        ),
    )


def _insert_key(conn: sqlite3.Connection, key: KeyRow) -> None:
    conn.execute(
        "INSERT INTO api_keys (id, api_id, digest, created_at) VALUES (?, ?, ?, ?)",
        (key.id, key.api_id, key.digest, key.created_at),
    )


def _api(row: sqlite3.Row) -> ApiRow:
    return ApiRow(
        row["id"], row["name"], row["active_version"], bool(row["private"]), row["created_at"], row["updated_at"]
    )


def _version(row: sqlite3.Row) -> VersionRow:
    return VersionRow(
        version=row["version"],
        bundle_hash=row["bundle_hash"],
        limits=json.loads(row["limits"]),
        rate_limit=None if row["rate_limit"] is None else json.loads(row["rate_limit"]),
        source_name=row["source_name"],
        requirements=json.loads(row["requirements"]),
        created_at=row["created_at"],
    )
