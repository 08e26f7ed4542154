"""Accounts and their tokens, API lifecycle (paused, deploying, failed builds), each version's
source, configuration (variables, encrypted secrets), public access and CORS."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("name", name="accounts_name_key"),
    )
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double),
    )
    op.create_index("account_tokens_by_account", "account_tokens", ["account_id"])
    op.create_table(
        "sources",
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.add_column("apis", sa.Column("owner", sa.Text))
    op.add_column("apis", sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("apis", sa.Column("building_since", sa.Double))
    op.add_column("apis", sa.Column("building_by", sa.Text))
    op.add_column("versions", sa.Column("status", sa.Text, nullable=False, server_default="ready"))
    op.add_column("versions", sa.Column("build_log", sa.Text))
    op.add_column("versions", sa.Column("source_digest", sa.Text))
    op.add_column("versions", sa.Column("config", sa.Text))
