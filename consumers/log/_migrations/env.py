"""Alembic environment of turbohooks' SQL schema.

At run time :class:`consumers._database.Database` applies the migrations on its
own connection (passed in ``config.attributes["connection"]``, already inside the
transaction that holds the migration lock). Without one, for instance when a
developer autogenerates a revision with :func:`consumers._database.alembic_config`,
an engine is made from ``sqlalchemy.url``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.log._models import ALEMBIC_VERSION_TABLE, Base

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=ALEMBIC_VERSION_TABLE,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("turbohooks: no database connection nor sqlalchemy.url given to the migrations")
    return url


if context.is_offline_mode():
    context.configure(
        url=_url(),
        target_metadata=Base.metadata,
        version_table=ALEMBIC_VERSION_TABLE,
        literal_binds=True,
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _configure(given)
else:
    asyncio.run(_run_on_own_engine(_url()))
