"""The recorder's bulk writes on SQLite as the driver's ``executemany``: SQL compiled once, values converted here.

SQLAlchemy runs every bound value through its type's processors (our
``UTCDateTime``, then SQLite's own datetime formatting, UUIDs, JSON), row by row,
and builds each statement's parameters anew: about a fifth of the recorder's CPU
went there. These statements are compiled by SQLAlchemy once, at start; each
batch's rows become tuples in the compiled order by one converter per column,
doing what those processors do (the stored text is the same: a test compares).

Only on SQLite: its batch transaction holds the write lock from its first read
(``BEGIN IMMEDIATE``), so the rows it read are all the rows there are, and the
``RETURNING`` the driver's ``executemany`` cannot give is not needed. On
PostgreSQL concurrent recorders race, and the SQLAlchemy statements with
``RETURNING`` (see :mod:`._recording`) tell their rows apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from sqlalchemy import JSON, Dialect, Table, TypeDecorator, Uuid
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.types import TypeEngine

from ._models import UTCDateTime

__all__ = ("DriverStatement", "driver_insert", "driver_update")

_Convert = Callable[[Any], Any]
_encode: Final = msgspec.json.Encoder()


def _as_is(value: Any) -> Any:
    return value


def _uuid(value: Any) -> Any:
    # SQLAlchemy's Uuid on SQLite: 32 hex digits.
    return None if value is None else value.hex


def _timestamp(value: datetime | None) -> str | None:
    # UTCDateTime (naive UTC on SQLite), then SQLite's DATETIME format, microseconds always written.
    # (isoformat, then its "+00:00" cut: a third of what strftime costs.)
    if value is None:
        return None
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _json(none_as_null: bool) -> _Convert:
    def convert(value: Any) -> Any:
        if value is None:
            return None if none_as_null else "null"
        if value is JSON.NULL:
            return "null"
        return _encode.encode(value).decode()

    return convert


def _converter(column_type: TypeEngine[Any]) -> _Convert:
    if isinstance(column_type, UTCDateTime):
        return _timestamp
    if isinstance(column_type, TypeDecorator):
        raise TypeError(f"no driver conversion for {column_type!r}")
    if isinstance(column_type, Uuid):
        return _uuid
    if isinstance(column_type, JSON):
        return _json(column_type.none_as_null)
    return _as_is


class DriverStatement:
    """One compiled statement and the conversion of a parameter dict to its tuple, for ``executemany``."""

    __slots__ = ("_order", "sql")

    def __init__(
        self, statement: Insert | Update, dialect: Dialect, keys: Sequence[str], types: Mapping[str, TypeEngine[Any]]
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name}: the driver statements need a positional paramstyle")
        self.sql: Final = compiled.string
        fixed = compiled.params
        self._order: list[tuple[str, _Convert, Any]] = []
        for name in compiled.positiontup:
            if name in types:
                self._order.append((name, _converter(types[name]), None))
            elif name in fixed:  # a literal of the statement itself ("outcome = 'pending'")
                self._order.append(("", _as_is, fixed[name]))
            else:
                raise KeyError(f"no value nor type for the parameter {name!r}")

    def row(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(convert(params[name]) if name else value for name, convert, value in self._order)

    async def run(self, connection: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> None:
        """``executemany`` of ``rows`` (nothing when there are none)."""
        params = [self.row(row) for row in rows]
        if params:
            await connection.exec_driver_sql(self.sql, params)


def _types(table: Table) -> dict[str, TypeEngine[Any]]:
    return {column.key: column.type for column in table.c}


def driver_insert(table: Table, key: str, dialect: Dialect) -> DriverStatement:
    """``INSERT`` of every column of ``table``, ignoring a row whose ``key`` is stored already."""
    statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
    types = _types(table)
    return DriverStatement(statement, dialect, list(types), types)


def driver_update(statement: Update, table: Table, keys: Sequence[str], dialect: Dialect) -> DriverStatement:
    """``statement`` (an UPDATE whose row is named by the parameter ``b_id``, the primary key) setting ``keys``."""
    types = _types(table)
    (primary,) = table.primary_key.columns
    types["b_id"] = primary.type
    return DriverStatement(statement, dialect, [k for k in keys if k != "b_id"], types)
