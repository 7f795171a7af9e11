"""The audit log: every admin action, who did it, when, on what and from where; never a secret.

Who is an *actor* string: ``token:<12 hex of the admin token's SHA-256>`` for the
API (a token is never stored), ``ui:<session id>`` for the UI, ``local:<os user>``
for the CLI and other local processes. The actor and address of the action under
way live in a context variable: the gateway sets it per request
(:func:`acting_as`), and :class:`~consumers.SubscriptionService` and the
operations read it when they record, so one call site covers the API and the CLI.
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from sqlalchemy import ColumnElement, func, select

from ._database import Database
from ._models import AuditRow

__all__ = ("AuditEntry", "AuditStore", "acting_as", "current_actor", "local_actor")

_MAX_ACTOR: Final = 200
_MAX_TARGET: Final = 200
_MAX_ADDRESS: Final = 64


class AuditEntry(msgspec.Struct, kw_only=True):
    """One admin action."""

    id: uuid.UUID
    at: datetime
    actor: str
    """``token:<hash prefix>``, ``ui:<session>`` or ``local:<user>``: never a token."""
    action: str
    """``create``, ``update``, ``delete``, ``rotate``, ``pause``, ``resume``, ``retry``, ``recover``,
    ``replay``, ``test``, ``sign-in`` ..."""
    target: str
    """``subscription:<id>``, ``delivery:<id>``, ``session`` ..."""
    details: dict[str, Any]
    source_ip: str | None


_ACTOR: ContextVar[tuple[str, str | None] | None] = ContextVar("turbohooks_audit_actor", default=None)


def local_actor() -> str:
    """``local:<os user>``: who acts from a process on this machine (the CLI)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (containers)
        user = "unknown"
    return f"local:{user}"


def current_actor() -> tuple[str, str | None]:
    """``(actor, source_ip)`` of the action under way; a local process's user when none was set."""
    return _ACTOR.get() or (local_actor(), None)


@contextlib.contextmanager
def acting_as(actor: str, source_ip: str | None = None) -> Iterator[None]:
    """Record the actions inside the block as ``actor``'s, from ``source_ip``."""
    token = _ACTOR.set((actor[:_MAX_ACTOR], None if source_ip is None else source_ip[:_MAX_ADDRESS]))
    try:
        yield
    finally:
        _ACTOR.reset(token)


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=dict(row.details),
        source_ip=row.source_ip,
    )


def _filters(action: str | None, target: str | None, actor: str | None) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if action is not None:
        filters.append(AuditRow.action == action)
    if target is not None:
        filters.append(AuditRow.target == target)
    if actor is not None:
        filters.append(AuditRow.actor == actor)
    return filters


class AuditStore:
    """The audit log in SQL (``turbohooks_audit_log``); append-only."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        action: str,
        target: str,
        details: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        source_ip: str | None = None,
    ) -> AuditEntry:
        """Append one action; ``actor``/``source_ip`` default to :func:`current_actor`'s."""
        if actor is None:
            actor, context_ip = current_actor()
            source_ip = source_ip if source_ip is not None else context_ip
        row = AuditRow(
            id=uuid.uuid4(),
            at=datetime.now(UTC),
            actor=actor[:_MAX_ACTOR],
            action=action[:32],
            target=target[:_MAX_TARGET],
            details=dict(details or {}),
            source_ip=None if source_ip is None else source_ip[:_MAX_ADDRESS],
        )
        async with self._db.transaction() as session:
            session.add(row)
        return _entry(row)

    async def list(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[AuditEntry]:
        """Entries, newest first, optionally of one action, target and/or actor."""
        query = (
            select(AuditRow)
            .where(*_filters(action, target, actor))
            .order_by(AuditRow.at.desc(), AuditRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._db.session() as session:
            return [_entry(row) for row in await session.scalars(query)]

    async def count(self, *, action: str | None = None, target: str | None = None, actor: str | None = None) -> int:
        """How many entries :meth:`list` would page through."""
        query = select(func.count()).select_from(AuditRow).where(*_filters(action, target, actor))
        async with self._db.session() as session:
            return (await session.execute(query)).scalar_one()
