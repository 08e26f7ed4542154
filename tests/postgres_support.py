"""Throwaway PostgreSQL databases for tests: `postgres_url` is a fresh, uniquely named database
on the server at WASMGATE_TEST_POSTGRES_URL (default: postgres@127.0.0.1:5432, trust auth),
dropped afterwards. Other databases on that server are never touched. No server is a failure,
not a skip: these tests are what proves the PostgreSQL path."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

ADMIN_URL = os.environ.get("WASMGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({error}); start it, or point"
            " WASMGATE_TEST_POSTGRES_URL at a server where this user may CREATE DATABASE",
            pytrace=False,
        )


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, uniquely named database, dropped on exit."""
    name = f"wasmgate_test_{uuid.uuid4().hex}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url
