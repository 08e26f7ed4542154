"""Metadata: APIs, versions, API keys, invocation logs, hourly usage, shared bundle archives.

One code path (SQLAlchemy Core) for two stores: SQLite in the data dir (the default, one
host) and PostgreSQL (`WASMGATE_DATABASE_URL`, shared by several hosts). The schema is
Alembic's (`gateway/state/migrations`), brought to head when a `Database` opens. Every call is
short and blocking (callers on the event loop run it in a worker thread), and a write is
committed before the call returns, so `kill -9` loses nothing accepted (SQLite: WAL with
synchronous=NORMAL survives a process crash).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    exists,
    func,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.state.records import AccountRow, ApiRow, Charge, InvocationRow, KeyRow, VersionRow
from gateway.state.schema import (
    account_tokens,
    accounts,
    api_keys,
    apis,
    bundle_archives,
    invocations,
    key_usage,
    sources,
    usage,
    versions,
)

MIGRATIONS = Path(__file__).parent / "migrations"
# Held (per transaction) while a PostgreSQL database is migrated: hosts starting together take turns.
_MIGRATION_LOCK = int.from_bytes(b"wasmgate", "big")


class NameTaken(Exception):
    """Another API (or account) already has this name."""


class Database:
    def __init__(self, url: str | Path, log_retention: int = 1000) -> None:
        """`url`: a SQLAlchemy URL (`postgresql://…` uses psycopg 3), or a path: a SQLite file."""
        self.log_retention = log_retention
        self.engine = _engine(url)
        # Several hosts can share PostgreSQL; SQLite belongs to the one host whose data dir holds it.
        self.shared = self.engine.dialect.name != "sqlite"
        self._migrate()

    def _migrate(self) -> None:
        """Bring the schema to head (a no-op when it is there), one process at a time."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return conn.execute(select(1)).scalar() == 1
        except SQLAlchemyError:
            return False

    def _rows(self, statement: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(statement).mappings())

    # -- APIs and versions ----------------------------------------------------------------

    def create_api(self, api: ApiRow, version: VersionRow, key: KeyRow) -> None:
        """The API, its first version and its first key, in one transaction."""
        try:
            with self.engine.begin() as conn:
                conn.execute(apis.insert().values(
                    id=api.id, name=api.name, active_version=version.version, private=api.private,
                    created_at=api.created_at, updated_at=api.updated_at, owner=api.owner,
                ))
                _insert_version(conn, api.id, version)
                _insert_key(conn, key)
        except IntegrityError as error:
            if _name_conflict(error):
                raise NameTaken(api.name) from None
            raise

    def add_version(self, api_id: str, version: VersionRow, name: str, private: bool) -> int | None:
        """Store the next version and make it active; its number, or None if the API is gone."""
        try:
            with self.engine.begin() as conn:
                # Locks the API's row (PostgreSQL; SQLite's writers already take turns): two hosts
                # updating one API at once get consecutive numbers.
                if conn.execute(select(apis.c.id).where(apis.c.id == api_id).with_for_update()).first() is None:
                    return None
                latest = conn.execute(select(func.max(versions.c.version)).where(versions.c.api_id == api_id))
                number = latest.scalar() + 1
                _insert_version(conn, api_id, replace(version, version=number))
                conn.execute(update(apis).where(apis.c.id == api_id).values(
                    active_version=number, name=name, private=private, updated_at=version.created_at
                ))
                return number
        except IntegrityError as error:
            if _name_conflict(error):
                raise NameTaken(name) from None
            raise

    def add_failed_version(self, api_id: str, version: VersionRow) -> int | None:
        """Record a build that failed as the next version (never active); its number, or None
        if the API is gone."""
        with self.engine.begin() as conn:
            if conn.execute(select(apis.c.id).where(apis.c.id == api_id).with_for_update()).first() is None:
                return None
            number = conn.execute(select(func.max(versions.c.version)).where(versions.c.api_id == api_id)).scalar() + 1
            _insert_version(conn, api_id, replace(version, version=number, status="failed"))
            return number

    def set_paused(self, api_id: str, paused: bool) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(update(apis).where(apis.c.id == api_id).values(paused=paused, updated_at=time.time()))
            return result.rowcount == 1

    def set_building(self, api_id: str, since: float | None, by: str | None = None) -> None:
        """Mark a build for the API as running (`since`, in process `by`), or as over (None)."""
        with self.engine.begin() as conn:
            conn.execute(update(apis).where(apis.c.id == api_id).values(building_since=since, building_by=by))

    def set_active_version(self, api_id: str, version: int) -> bool:
        has_version = exists().where(
            versions.c.api_id == api_id, versions.c.version == version, versions.c.status == "ready"
        )
        with self.engine.begin() as conn:
            result = conn.execute(
                update(apis).where(apis.c.id == api_id, has_version).values(
                    active_version=version, updated_at=time.time()
                )
            )
            return result.rowcount == 1

    def delete_api(self, api_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(apis).where(apis.c.id == api_id)).rowcount == 1

    def get_api(self, api_id: str) -> ApiRow | None:
        rows = self._rows(select(apis).where(apis.c.id == api_id))
        return _api(rows[0]) if rows else None

    def api_by_name(self, name: str) -> ApiRow | None:
        rows = self._rows(select(apis).where(apis.c.name == name))
        return _api(rows[0]) if rows else None

    def list_apis(self, owner: str | None = None) -> list[ApiRow]:
        """Every API, or those of one account."""
        query = select(apis).order_by(apis.c.created_at, apis.c.id)
        if owner is not None:
            query = query.where(apis.c.owner == owner)
        return [_api(row) for row in self._rows(query)]

    def versions(self, api_id: str) -> list[VersionRow]:
        rows = self._rows(select(versions).where(versions.c.api_id == api_id).order_by(versions.c.version))
        return [_version(row) for row in rows]

    def version(self, api_id: str, version: int) -> VersionRow | None:
        rows = self._rows(select(versions).where(versions.c.api_id == api_id, versions.c.version == version))
        return _version(rows[0]) if rows else None

    def active_versions(self) -> dict[str, VersionRow]:
        """Every API's active version by API id, in one query (a start with 1,000 APIs asked
        for each on its own)."""
        query = select(versions).join(
            apis, (apis.c.id == versions.c.api_id) & (apis.c.active_version == versions.c.version)
        )
        return {row["api_id"]: _version(row) for row in self._rows(query)}

    # -- garbage collection ---------------------------------------------------------------------

    def prune_versions(self, keep_last: int) -> int:
        """Forget each API's versions older than its latest `keep_last` (never the active one);
        how many were removed."""
        newest = (
            select(func.max(versions.c.version))
            .where(versions.c.api_id == apis.c.id)
            .scalar_subquery()
        )
        old = select(apis.c.id, apis.c.active_version, newest.label("newest"))
        removed = 0
        with self.engine.begin() as conn:
            for api_id, active, latest in conn.execute(old).all():
                result = conn.execute(
                    delete(versions).where(
                        versions.c.api_id == api_id,
                        versions.c.version <= latest - keep_last,
                        versions.c.version != active,
                    )
                )
                removed += result.rowcount
        return removed

    def referenced_bundles(self) -> set[str]:
        """The bundles some version of some API still names."""
        return {row["bundle_hash"] for row in self._rows(select(versions.c.bundle_hash).distinct())} - {""}

    def prune_unreferenced(self, bundle_hashes: set[str] | None = None) -> None:
        """Remove stored sources no version names, and shared bundle archives no version names
        (only among `bundle_hashes`, the ones just collected, if given)."""
        with self.engine.begin() as conn:
            named = select(versions.c.source_digest).where(versions.c.source_digest.is_not(None))
            conn.execute(delete(sources).where(sources.c.digest.not_in(named)))
            used = select(versions.c.bundle_hash)
            orphaned = delete(bundle_archives).where(bundle_archives.c.bundle_hash.not_in(used))
            if bundle_hashes is not None:
                orphaned = orphaned.where(bundle_archives.c.bundle_hash.in_(bundle_hashes))
            conn.execute(orphaned)

    # -- deployed sources ---------------------------------------------------------------------

    def put_source(self, digest: str, data: bytes) -> None:
        """Keep a deployed source (a no-op if it is there: sources are content-addressed)."""
        with self.engine.begin() as conn:
            conn.execute(
                _insert(conn, sources).values(digest=digest, data=data, created_at=time.time()).on_conflict_do_nothing()
            )

    def get_source(self, digest: str) -> bytes | None:
        rows = self._rows(select(sources.c.data).where(sources.c.digest == digest))
        return bytes(rows[0]["data"]) if rows else None

    # -- accounts -------------------------------------------------------------------------------

    def create_account(self, account: AccountRow, token: KeyRow) -> None:
        """The account and its first token (KeyRow.api_id holds the account id)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(accounts.insert().values(vars(account)))
                _insert_token(conn, token)
        except IntegrityError as error:
            if any(marker in str(error.orig) for marker in ("accounts.name", "accounts_name_key")):
                raise NameTaken(account.name) from None
            raise

    def accounts(self) -> list[AccountRow]:
        return [AccountRow(**row) for row in self._rows(select(accounts).order_by(accounts.c.created_at, accounts.c.id))]

    def get_account(self, account_id: str) -> AccountRow | None:
        rows = self._rows(select(accounts).where(accounts.c.id == account_id))
        return AccountRow(**rows[0]) if rows else None

    def delete_account(self, account_id: str) -> bool:
        """The account and its tokens (its APIs are deleted by the caller first)."""
        with self.engine.begin() as conn:
            return conn.execute(delete(accounts).where(accounts.c.id == account_id)).rowcount == 1

    def add_account_token(self, token: KeyRow, revoke_others: bool) -> bool:
        """A new token for an account (KeyRow.api_id holds the account id), optionally revoking
        the others in the same transaction; False if the account is gone."""
        try:
            with self.engine.begin() as conn:
                if revoke_others:
                    conn.execute(
                        update(account_tokens)
                        .where(account_tokens.c.account_id == token.api_id, account_tokens.c.revoked_at.is_(None))
                        .values(revoked_at=time.time())
                    )
                _insert_token(conn, token)
            return True
        except IntegrityError:
            return False

    def revoke_account_token(self, account_id: str, token_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(account_tokens)
                .where(
                    account_tokens.c.id == token_id,
                    account_tokens.c.account_id == account_id,
                    account_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=time.time())
            )
            return result.rowcount == 1

    def account_tokens(self, account_id: str | None = None) -> list[KeyRow]:
        """Valid tokens (KeyRow.api_id holds the account id), of one account or of all."""
        query = select(
            account_tokens.c.id, account_tokens.c.account_id.label("api_id"), account_tokens.c.digest,
            account_tokens.c.created_at,
        ).where(account_tokens.c.revoked_at.is_(None))
        if account_id is not None:
            query = query.where(account_tokens.c.account_id == account_id)
        return [KeyRow(**row) for row in self._rows(query.order_by(account_tokens.c.created_at, account_tokens.c.id))]

    def account_tokens_by_id(self, token_id: str) -> list[KeyRow]:
        """The valid token with this id, if any (KeyRow.api_id holds the account id)."""
        query = select(
            account_tokens.c.id, account_tokens.c.account_id.label("api_id"), account_tokens.c.digest,
            account_tokens.c.created_at,
        ).where(account_tokens.c.id == token_id, account_tokens.c.revoked_at.is_(None))
        return [KeyRow(**row) for row in self._rows(query)]

    # -- API keys ---------------------------------------------------------------------------

    def add_key(self, key: KeyRow) -> bool:
        """False if the API no longer exists."""
        try:
            with self.engine.begin() as conn:
                _insert_key(conn, key)
            return True
        except IntegrityError:
            return False

    def keys(self, api_id: str | None = None) -> list[KeyRow]:
        """Keys that are not revoked, of one API or of all."""
        query = select(api_keys.c.id, api_keys.c.api_id, api_keys.c.digest, api_keys.c.created_at).where(
            api_keys.c.revoked_at.is_(None)
        )
        if api_id is not None:
            query = query.where(api_keys.c.api_id == api_id)
        return [KeyRow(**row) for row in self._rows(query.order_by(api_keys.c.created_at, api_keys.c.id))]

    def revoke_key(self, api_id: str, key_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.api_id == api_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            return result.rowcount == 1

    # -- invocations --------------------------------------------------------------------------

    def record(self, entries: list[InvocationRow], charges: list[Charge] = ()) -> None:
        """Log calls, add them to their hours' usage, count quota charges, keep only the latest
        log entries: one transaction for a whole batch (gateway.state.call_log writes them).

        The statements are built once (module level), not per batch.
        """
        try:
            with self.engine.begin() as conn:
                self._record(conn, entries, charges)
        except IntegrityError:  # an API was deleted while its calls ran: keep the others
            for entry in entries:
                try:
                    with self.engine.begin() as conn:
                        self._record(conn, [entry], [c for c in charges if c.api_id == entry.api_id])
                except IntegrityError:
                    pass
            return

    def _record(self, conn: Connection, entries: list[InvocationRow], charges: list[Charge]) -> None:
        if entries:
            conn.execute(_LOG_CALL, [vars(entry) for entry in entries])
            conn.execute(_ADD_USAGE, [
                {
                    "api_id": e.api_id, "hour": int(e.time // 3600 * 3600), "outcome": e.outcome, "fuel": e.fuel_used,
                    "bytes_in": e.bytes_in, "bytes_out": e.bytes_out, "duration_ms": e.duration_ms,
                }
                for e in entries
            ])
            for api_id in {entry.api_id for entry in entries}:
                conn.execute(_PRUNE_LOG, {"api_id": api_id, "keep": self.log_retention})
        for charge in charges:
            added = _insert(conn, key_usage).values(
                key_id=charge.key_id, period=charge.period, api_id=charge.api_id,
                requests=charge.requests, fuel=charge.fuel,
            )
            conn.execute(added.on_conflict_do_update(
                index_elements=[key_usage.c.key_id, key_usage.c.period],
                set_={name: key_usage.c[name] + added.excluded[name] for name in ("requests", "fuel")},
            ))

    def key_usage(self, key_id: str, periods: list[str]) -> dict[str, tuple[int, int]]:
        """period -> (requests, fuel) of one key; periods without calls are absent."""
        query = select(key_usage.c.period, key_usage.c.requests, key_usage.c.fuel).where(
            key_usage.c.key_id == key_id, key_usage.c.period.in_(periods)
        )
        return {row["period"]: (row["requests"], row["fuel"]) for row in self._rows(query)}

    def api_key_usage(self, api_id: str, periods: list[str]) -> list[dict[str, Any]]:
        query = (
            select(key_usage.c.key_id, key_usage.c.period, key_usage.c.requests, key_usage.c.fuel)
            .where(key_usage.c.api_id == api_id, key_usage.c.period.in_(periods))
            .order_by(key_usage.c.key_id, key_usage.c.period)
        )
        return [dict(row) for row in self._rows(query)]

    def logs(
        self,
        api_id: str,
        limit: int,
        after_id: int | None = None,
        status: int | None = None,
        outcome: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """The latest `limit` calls, newest first; with `after_id`, those logged after that one,
        oldest first (a follower's next page)."""
        query = select(invocations).where(invocations.c.api_id == api_id)
        if status is not None:
            query = query.where(invocations.c.status == status)
        if outcome is not None:
            query = query.where(invocations.c.outcome == outcome)
        if since is not None:
            query = query.where(invocations.c.time >= since)
        if after_id is not None:
            query = query.where(invocations.c.id > after_id).order_by(invocations.c.id)
        else:
            query = query.order_by(invocations.c.id.desc())
        return [dict(row) for row in self._rows(query.limit(limit))]

    def last_log_id(self, api_id: str) -> int:
        """The id of the API's latest logged call (0: none)."""
        query = select(func.max(invocations.c.id)).where(invocations.c.api_id == api_id)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar() or 0

    def usage(self, api_id: str) -> list[dict[str, Any]]:
        """One row per (hour, outcome), oldest hour first."""
        query = (
            select(usage.c.hour, usage.c.outcome, usage.c.requests, usage.c.fuel, usage.c.bytes_in,
                   usage.c.bytes_out, usage.c.duration_ms)
            .where(usage.c.api_id == api_id)
            .order_by(usage.c.hour, usage.c.outcome)
        )
        return [dict(row) for row in self._rows(query)]

    # -- bundle archives (the shared bundle store) ------------------------------------------------

    def put_bundle_archive(self, bundle_hash: str, data: bytes) -> None:
        """Store a bundle's archive (a no-op if one is there: archives are content-addressed)."""
        with self.engine.begin() as conn:
            conn.execute(
                _insert(conn, bundle_archives)
                .values(bundle_hash=bundle_hash, archive=data, created_at=time.time())
                .on_conflict_do_nothing()
            )

    def has_bundle_archive(self, bundle_hash: str) -> bool:
        query = select(bundle_archives.c.bundle_hash).where(bundle_archives.c.bundle_hash == bundle_hash)
        return bool(self._rows(query))

    def get_bundle_archive(self, bundle_hash: str) -> bytes | None:
        query = select(bundle_archives.c.archive).where(bundle_archives.c.bundle_hash == bundle_hash)
        with self.engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                row = conn.execute(query).first()
                return bytes(row[0]) if row else None
            # Archives are tens of MB: in psycopg's default text format a bytea arrives hex-encoded
            # (twice the bytes, then parsed); the binary format takes a third of the time, and this
            # read is on the path of a hot swap reaching another host.
            compiled = query.compile(conn)
            with conn.connection.driver_connection.cursor(binary=True) as cursor:
                row = cursor.execute(str(compiled), compiled.params).fetchone()
            return bytes(row[0]) if row else None


def _engine(url: str | Path) -> Engine:
    """The engine for `url`; SQLite in WAL mode with one connection per process (as before)."""
    if isinstance(url, Path):
        url.parent.mkdir(parents=True, exist_ok=True)
        url = URL.create("sqlite", database=str(url))
    url = make_url(url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, pool_size=1, max_overflow=0)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock up front: a transaction that reads first and then writes could
        # otherwise fail at once (SQLITE_BUSY) when another process writes meanwhile.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_LOG_CALL = invocations.insert()
# Plain SQL that SQLite and PostgreSQL both accept, so the hot path needs no dialect switch.
_ADD_USAGE = text(
    "INSERT INTO usage (api_id, hour, outcome, requests, fuel, bytes_in, bytes_out, duration_ms)"
    " VALUES (:api_id, :hour, :outcome, 1, :fuel, :bytes_in, :bytes_out, :duration_ms)"
    " ON CONFLICT (api_id, hour, outcome) DO UPDATE SET requests = usage.requests + 1,"
    " fuel = usage.fuel + excluded.fuel, bytes_in = usage.bytes_in + excluded.bytes_in,"
    " bytes_out = usage.bytes_out + excluded.bytes_out, duration_ms = usage.duration_ms + excluded.duration_ms"
)
_PRUNE_LOG = text(
    "DELETE FROM invocations WHERE api_id = :api_id AND id <= (SELECT id FROM invocations"
    " WHERE api_id = :api_id ORDER BY id DESC LIMIT 1 OFFSET :keep)"
)


def _insert(conn: Connection, table: Table):
    """An INSERT with the dialect's ON CONFLICT clauses (upserts)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _name_conflict(error: IntegrityError) -> bool:
    """Whether the unique API name was violated (SQLite and PostgreSQL word it differently)."""
    return any(marker in str(error.orig) for marker in ("apis.name", "apis_name_key"))


def _insert_version(conn: Connection, api_id: str, v: VersionRow) -> None:
    conn.execute(versions.insert().values(
        api_id=api_id, version=v.version, bundle_hash=v.bundle_hash, limits=json.dumps(v.limits),
        rate_limit=None if v.rate_limit is None else json.dumps(v.rate_limit),
        source_name=v.source_name, requirements=json.dumps(v.requirements), created_at=v.created_at,
        quota=None if v.quota is None else json.dumps(v.quota), status=v.status, build_log=v.build_log,
        source_digest=v.source_digest, config=None if v.config is None else json.dumps(v.config),
    ))


def _insert_token(conn: Connection, token: KeyRow) -> None:
    conn.execute(account_tokens.insert().values(
        id=token.id, account_id=token.api_id, digest=token.digest, created_at=token.created_at
    ))


def _insert_key(conn: Connection, key: KeyRow) -> None:
    conn.execute(api_keys.insert().values(vars(key)))


def _api(row: Any) -> ApiRow:
    return ApiRow(**{**row, "private": bool(row["private"]), "paused": bool(row["paused"])})


def _version(row: Any) -> VersionRow:
    return VersionRow(
        version=row["version"],
        bundle_hash=row["bundle_hash"],
        limits=json.loads(row["limits"]),
        rate_limit=None if row["rate_limit"] is None else json.loads(row["rate_limit"]),
        source_name=row["source_name"],
        requirements=json.loads(row["requirements"]),
        created_at=row["created_at"],
        quota=None if row["quota"] is None else json.loads(row["quota"]),
        status=row["status"],
        build_log=row["build_log"],
        source_digest=row["source_digest"],
        config=None if row["config"] is None else json.loads(row["config"]),
    )
