"""The SQL database of the delivery engine: one async engine, migrated on start.

SQLite (``sqlite+aiosqlite:///path``, the default) and PostgreSQL
(``postgresql+asyncpg://...``) are both supported. The schema is applied by the
Alembic migrations in ``consumers/_migrations`` when a :class:`Database` is
entered; no ``alembic.ini`` is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import msgspec
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from streams._errors import DatabaseUnavailableError, TurbohooksError

from ._models import ALEMBIC_VERSION_TABLE

__all__ = ("DATABASE_OUTAGES", "DATABASE_REFUSALS", "MIGRATIONS_DIR", "Database", "alembic_config")

DATABASE_REFUSALS: Final = (IntegrityError, DataError)
"""The database's answers about the data itself (a constraint, a value it cannot store): writing again
will not help. Every other SQLAlchemy error is taken for an outage."""
DATABASE_OUTAGES: Final = (SQLAlchemyError, OSError)
"""What "the database is unavailable" can look like: refused or lost connections, a pool or lock timeout,
and the generic ``DBAPIError`` some drivers raise for them (asyncpg: "database … is not currently
accepting connections" while PostgreSQL restarts). Catch :data:`DATABASE_REFUSALS` first: the stores
translate the rest into :class:`DatabaseUnavailableError`, and the recorder writes again rather than
parking a batch (a record parked for an outage would be missing from the log: the fault suite's
PostgreSQL restart parked 2,322 of 5,000 before this)."""

MIGRATIONS_DIR: Final = Path(__file__).with_name("_migrations")

# Key of the PostgreSQL advisory lock that serialises concurrent migrations
# (two processes starting at once): b"turbohk\x01" as a signed 64-bit integer.
_MIGRATION_LOCK_KEY: Final = int.from_bytes(b"turbohk\x01", "big", signed=True)

# Execution option read by the SQLite "begin" hook: "IMMEDIATE" takes the write
# lock up front, so a read-then-write transaction waits for busy_timeout instead
# of failing with "database is locked" when it upgrades its lock.
_SQLITE_BEGIN: Final = "turbohooks_sqlite_begin"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`Config` for turbohooks' migrations, built in code.

    With ``url``, Alembic commands open their own connection, e.g. to
    autogenerate a revision::

        command.revision(alembic_config("sqlite+aiosqlite:///dev.db"), "add x", autogenerate=True)
    """
    config = Config()
    # ConfigParser interpolates "%": escape it in paths and URLs.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    """An async context manager owning the engine; entering it migrates the schema to head.

    ::

        async with Database(settings.resolved_database_url()) as db:
            async with db.session() as session:
                ...
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self._url = make_url(url)
        self.dialect_name: Final[str] = self._url.get_backend_name()
        """``"sqlite"`` or ``"postgresql"``."""
        # msgspec for JSON columns: the recorder writes headers and payloads of
        # every attempt, and the stdlib encoder was a tenth of its time.
        options: dict[str, Any] = {
            "echo": echo,
            # Logs (echo, or the sqlalchemy.engine logger at INFO/DEBUG) never show bound
            # parameters: they carry signing secrets and header values (sealed, but still).
            "hide_parameters": True,
            "json_serializer": _json_text,
            "json_deserializer": msgspec.json.decode,
        }
        if self.dialect_name == "postgresql":
            # Connections outlive PostgreSQL restarts: test each before use.
            options["pool_pre_ping"] = True
        self._engine = create_async_engine(self._url, **options)
        if self.dialect_name == "sqlite":
            # aiosqlite logs every statement with its parameters at DEBUG
            # (TURBOHOOKS_LOG_LEVEL=DEBUG): never below INFO, like hide_parameters.
            driver_log = logging.getLogger("aiosqlite")
            if driver_log.getEffectiveLevel() < logging.INFO:
                driver_log.setLevel(logging.INFO)
            event.listen(self._engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(self._engine.sync_engine, "begin", _sqlite_on_begin)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        database = self._url.database
        self._sqlite_file: Path | None = None
        if self.dialect_name == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
            self._sqlite_file = Path(database)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy async engine."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL, password hidden (for logs and messages)."""
        return self._url.render_as_string(hide_password=True)

    async def __aenter__(self) -> Self:
        try:
            await self._create_sqlite_folder()
            await self.migrate()
        except BaseException:
            await self._engine.dispose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._engine.dispose()

    def unavailable(self, exc: BaseException, doing: str = "is unavailable") -> DatabaseUnavailableError:
        """The one-line error a database outage becomes: which database, what happened, what to check."""
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        detail = next(iter(str(cause).splitlines()), "") or "no detail"
        return DatabaseUnavailableError(
            f"turbohooks: database {self.url} {doing} ({type(cause).__name__}: {detail});"
            " check that it is running and reachable, and that DATABASE_URL names it"
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A new session, as ``async with db.session() as session:``.

        Outages become :class:`DatabaseUnavailableError`.
        """
        try:
            async with self._sessions() as session:
                yield session
        except DATABASE_REFUSALS:
            raise
        except DATABASE_OUTAGES as exc:
            raise self.unavailable(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside a write transaction: committed on exit, rolled back on error.

        On SQLite the transaction takes the write lock when it starts (``BEGIN
        IMMEDIATE``), so concurrent writers queue for ``busy_timeout`` rather than fail.
        Outages become :class:`DatabaseUnavailableError`.
        """
        try:
            async with self._sessions() as session, session.begin():
                if self.dialect_name == "sqlite":
                    await session.connection(execution_options={_SQLITE_BEGIN: "IMMEDIATE"})
                yield session
        except DATABASE_REFUSALS:
            raise
        except DATABASE_OUTAGES as exc:
            raise self.unavailable(exc) from exc

    async def ping(self, timeout: float = 5.0) -> None:
        """Raise :class:`TurbohooksError` unless the database answers within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            raise self.unavailable(exc, "does not answer") from exc

    async def migrate(self) -> None:
        """Apply the migrations up to head; a no-op when the schema is already there."""
        try:
            async with self._engine.connect() as connection:
                await connection.run_sync(_upgrade_to_head)
        except DATABASE_REFUSALS as exc:
            raise TurbohooksError(f"turbohooks: database {self.url}: cannot apply migrations: {exc}") from exc
        except DATABASE_OUTAGES as exc:
            raise self.unavailable(exc, "cannot apply migrations") from exc

    async def _create_sqlite_folder(self) -> None:
        if self._sqlite_file is not None:
            await asyncio.to_thread(_private_sqlite_file, self._sqlite_file)


def _private_sqlite_file(path: Path) -> None:
    """The folder (0700 when created here) and the database file 0600, created before SQLite opens it.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode; ones
    left readable by an earlier release are made 0600 too.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def _upgrade_to_head(connection: Connection) -> None:
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    sqlite = connection.dialect.name == "sqlite"
    if _current_revision(connection) == head:  # the usual start: nothing to lock nor to do
        return
    if sqlite:
        # Batch migrations copy and drop tables, which would cascade deletes with
        # foreign keys on; the pragma is a no-op inside a transaction, so it goes first.
        _sqlite_pragma(connection, "foreign_keys=OFF")
        connection.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                # Held until commit: a second process waits, then finds the schema at head.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                raise TurbohooksError("turbohooks: a migration left rows violating foreign keys; rolled back")
    finally:
        if sqlite:
            connection.execution_options(**{_SQLITE_BEGIN: "DEFERRED"})
            _sqlite_pragma(connection, "foreign_keys=ON")


def _current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": ALEMBIC_VERSION_TABLE})
    try:
        return context.get_current_revision()
    finally:
        # Reading the version autobegan a transaction: end it before the real one.
        if connection.in_transaction():
            connection.rollback()


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    # On the driver connection, so that SQLAlchemy does not autobegin a transaction.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling starts transactions late (at the first
    # write, never for DDL): switch it off, and let the "begin" hook below open them.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers do not block the writer; busy_timeout: writers queue instead
        # of failing at once; foreign_keys: ON DELETE CASCADE (off by default in SQLite).
        # synchronous=NORMAL: in WAL mode a commit survives a crash of the process,
        # not a power loss; the delivery log is a record of attempts (the events
        # themselves are in JetStream, fsynced), and an fsync per recorder batch
        # was a large share of its time.
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _sqlite_on_begin(connection: Connection) -> None:
    connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get(_SQLITE_BEGIN, 'DEFERRED')}")
