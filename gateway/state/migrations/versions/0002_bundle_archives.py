"""Bundle archives in the database: the bundle store that hosts sharing it fetch from."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "bundle_archives",
        sa.Column("bundle_hash", sa.Text, primary_key=True),
        sa.Column("archive", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
