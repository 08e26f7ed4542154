"""Alembic migrations of the metadata schema, run by `gateway.db.Database` at start (no ini file).

Forward-only: a new migration goes in `versions/` as `NNNN_what.py` with `revision = "NNNN"`
and `down_revision` the previous one. It must work on SQLite and PostgreSQL alike, and
`gateway.state.database`'s table definitions must match what the migrations create (tests/test_db.py).
"""
