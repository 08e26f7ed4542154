"""The metadata schema as the code reads and writes it (SQLAlchemy Core tables).

The Alembic migrations (`gateway/state/migrations`) create it; tests/test_db.py checks that
the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
)


def _api_id(**primary_key: bool) -> Column:
    return Column("api_id", Text, ForeignKey("apis.id", ondelete="CASCADE"), nullable=False, **primary_key)


metadata = MetaData()
apis = Table(
    "apis", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("active_version", Integer, nullable=False),
    Column("private", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("owner", Text),  # the account that manages it; None: the admin's
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("building_since", Double),  # a build for it is running (its status: deploying)
    Column("building_by", Text),  # where that build runs: "<host>:<pid>"
    UniqueConstraint("name", name="apis_name_key"),
)
versions = Table(
    "versions", metadata,
    _api_id(primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("bundle_hash", Text, nullable=False),
    Column("limits", Text, nullable=False),
    Column("rate_limit", Text),
    Column("source_name", Text, nullable=False),
    Column("requirements", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("quota", Text),
    Column("status", Text, nullable=False, server_default="ready"),  # ready, or failed (its build)
    Column("build_log", Text),
    Column("source_digest", Text),  # sources.digest
    Column("config", Text),  # JSON: variables, encrypted secrets, auth, CORS
)
api_keys = Table(
    "api_keys", metadata,
    Column("id", Text, primary_key=True),
    _api_id(),
    Column("digest", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double),
    Index("api_keys_by_api", "api_id"),
)
invocations = Table(
    "invocations", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    _api_id(),
    Column("time", Double, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("version", Integer),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("route", Text),
    Column("status", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("fuel_used", BigInteger, nullable=False),
    Column("duration_ms", Double, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    Column("stdout", Text, nullable=False),
    Column("stderr", Text, nullable=False),
    Column("logs_truncated", Boolean, nullable=False),
    Column("error_detail", Text, nullable=False),
    Index("invocations_by_api", "api_id", "id"),
    sqlite_autoincrement=True,
)
usage = Table(
    "usage", metadata,
    _api_id(primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("outcome", Text, primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("fuel", BigInteger, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    Column("duration_ms", Double, nullable=False),
)
# Requests and fuel of one key in one period: "day:2026-11-23" or "month:2026-11" (UTC).
key_usage = Table(
    "key_usage", metadata,
    Column("key_id", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    _api_id(),
    Column("requests", BigInteger, nullable=False),
    Column("fuel", BigInteger, nullable=False),
    Index("key_usage_by_api", "api_id", "period"),
)
accounts = Table(
    "accounts", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("plan", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("name", name="accounts_name_key"),
)
account_tokens = Table(
    "account_tokens", metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double),
    Index("account_tokens_by_account", "account_id"),
)
# Deployed sources, content-addressed (a version that reuses a bundle reuses its source).
sources = Table(
    "sources", metadata,
    Column("digest", Text, primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
)
bundle_archives = Table(
    "bundle_archives", metadata,
    Column("bundle_hash", Text, primary_key=True),
    Column("archive", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
)
