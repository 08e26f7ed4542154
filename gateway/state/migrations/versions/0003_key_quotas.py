"""Per-key quotas: a version's `quota`, and each key's requests and fuel per day and month."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("versions", sa.Column("quota", sa.Text))
    op.create_table(
        "key_usage",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("api_id", sa.Text, sa.ForeignKey("apis.id", ondelete="CASCADE"), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("fuel", sa.BigInteger, nullable=False),
    )
    op.create_index("key_usage_by_api", "key_usage", ["api_id", "period"])
