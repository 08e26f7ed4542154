"""The first schema: APIs, versions, API keys, invocation logs, hourly usage.

Data dirs made before migrations existed already hold exactly these tables (without
Alembic's version table): everything is created only if missing, so they upgrade in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _api_id(**primary_key: bool) -> sa.Column:
    return sa.Column("api_id", sa.Text, sa.ForeignKey("apis.id", ondelete="CASCADE"), nullable=False, **primary_key)


def upgrade() -> None:
    op.create_table(
        "apis",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("active_version", sa.Integer, nullable=False),
        sa.Column("private", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.UniqueConstraint("name", name="apis_name_key"),
        if_not_exists=True,
    )
    op.create_table(
        "versions",
        _api_id(primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("bundle_hash", sa.Text, nullable=False),
        sa.Column("limits", sa.Text, nullable=False),
        sa.Column("rate_limit", sa.Text),
        sa.Column("source_name", sa.Text, nullable=False),
        sa.Column("requirements", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        _api_id(),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double),
        if_not_exists=True,
    )
    op.create_index("api_keys_by_api", "api_keys", ["api_id"], if_not_exists=True)
    op.create_table(
        "invocations",
        # SQLite: INTEGER PRIMARY KEY AUTOINCREMENT (ids never reused); PostgreSQL: BIGSERIAL.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        _api_id(),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("route", sa.Text),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("fuel_used", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Double, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.Column("stdout", sa.Text, nullable=False),
        sa.Column("stderr", sa.Text, nullable=False),
        sa.Column("logs_truncated", sa.Boolean, nullable=False),
        sa.Column("error_detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
        if_not_exists=True,
    )
    op.create_index("invocations_by_api", "invocations", ["api_id", "id"], if_not_exists=True)
    op.create_table(
        "usage",
        _api_id(primary_key=True),
        sa.Column("hour", sa.BigInteger, primary_key=True),
        sa.Column("outcome", sa.Text, primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("fuel", sa.BigInteger, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Double, nullable=False),
        if_not_exists=True,
    )
