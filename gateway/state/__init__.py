"""What the gateway knows and keeps: the metadata database (SQLite or PostgreSQL, Alembic
migrations), deployments and their builds, the in-memory registry of live versions and keys,
the call log written behind requests, and sync across hosts and worker processes.

May import `limits`, `settings` and `errors`; never `jobs`, `services` or `http`.
"""
