"""Fixtures of the SQL storage tests: real databases, on SQLite and on PostgreSQL.

Every storage test runs on both backends. PostgreSQL is the machine's server at
``TURBOHOOKS_TEST_POSTGRES_URL`` (default ``postgres@127.0.0.1:5432``): a
database with a random name is created per test module (or per test, for the
migration tests) and dropped afterwards. Without a reachable server those
tests are skipped, with the reason (and fail under ``CI``, where it must be there).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from consumers.log._database import Database

POSTGRES_ADMIN_URL = os.environ.get(
    "TURBOHOOKS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def sqlite_url(folder: Path) -> str:
    """A SQLite file in a folder that does not exist yet (the Database creates it)."""
    return f"sqlite+aiosqlite:///{folder / 'data' / 'turbohooks.db'}"


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database; its URL; dropped on exit."""
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"turbohooks_test_{uuid.uuid4().hex[:16]}"
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError) as exc:
        await admin.dispose()
        reason = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            # CI's machine has PostgreSQL: a skip there would hide a broken backend.
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="module")
async def postgres_url() -> AsyncIterator[str]:
    """One PostgreSQL database for the module's tests (each test empties it first)."""
    async with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database, on each backend in turn."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=BACKENDS)
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a database with nothing in it yet, on each backend in turn."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database."""
    async with Database(database_url) as database:
        if database.dialect_name == "postgresql":
            async with database.transaction() as session:
                await session.execute(text("TRUNCATE webhook_subscriptions CASCADE"))
        yield database
