"""Reading and writing subscriptions and deliveries in SQL.

:class:`SubscriptionStore` holds the subscriptions (the source of truth the
workers' KV mirror is built from). :class:`DeliveryStore` is written by the
recorder, in batches of :class:`~consumers._messages.AttemptRecord`, and read by
the gateway (delivery log, retry, recover, stats). Both work on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import builtins
import math
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

import msgspec
from sqlalchemy import (
    JSON,
    ColumnElement,
    CursorResult,
    Insert,
    Row,
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import defer

from streams._errors import ConflictError, NotFoundError

from ._database import Database
from ._messages import (
    AttemptOutcome,
    AttemptRecord,
    AttemptTrigger,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
)
from ._models import AttemptRow, DeliveryRow, SubscriptionRow

__all__ = (
    "AttemptDetail",
    "DeliveryDetail",
    "DeliveryStats",
    "DeliveryStore",
    "DeliverySummary",
    "EventTypeActivity",
    "RecordResult",
    "SubscriptionActivity",
    "SubscriptionStore",
)

_T = TypeVar("_T")

# Ids per "IN (...)" list: far below the bind-parameter limits of SQLite (32766)
# and PostgreSQL (32767), whatever size of batch the recorder hands over.
_IN_CHUNK: Final = 1000

_STATUS_AFTER: Final[dict[str, DeliveryStatus]] = {"success": "success", "retrying": "pending", "failed": "failed"}
"""A delivery's status when its latest attempt had this outcome."""


class DeliverySummary(msgspec.Struct, kw_only=True):
    """One delivery (an event to a subscription) as listed in the delivery log."""

    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    """``success`` once any attempt succeeded; else ``pending`` while retries remain, then ``failed``."""
    trigger: AttemptTrigger
    """Of the latest attempt."""
    attempts: int
    """Attempts recorded for it, of every trigger."""
    response_code: int | None = None
    error_message: str | None = None
    latency_ms: float | None = None
    """Of the latest attempt."""
    stream_seq: int | None = None
    created_at: datetime
    """When its first attempt started."""
    delivered_at: datetime | None = None
    last_attempt_at: datetime | None = None
    """When the latest attempt finished."""
    next_attempt_at: datetime | None = None


class AttemptDetail(msgspec.Struct, kw_only=True):
    """One HTTP attempt of a delivery, as recorded."""

    attempt_id: uuid.UUID
    delivery_id: uuid.UUID
    attempt: int
    outcome: AttemptOutcome
    trigger: AttemptTrigger
    request_url: str
    request_headers: dict[str, str]
    response_code: int | None = None
    response_headers: dict[str, str]
    response_body: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    started_at: datetime
    finished_at: datetime
    next_attempt_at: datetime | None = None


class DeliveryDetail(DeliverySummary, kw_only=True):
    """A delivery with its latest answer, the body sent, and every attempt (oldest first)."""

    response_body: str | None = None
    payload: bytes = b""
    """The request body of the latest attempt that carried one (JSON, re-encoded)."""
    attempt_log: list[AttemptDetail] = msgspec.field(default_factory=list)


class SubscriptionActivity(msgspec.Struct, kw_only=True):
    """Deliveries of one subscription in a stats window."""

    subscription_id: uuid.UUID
    name: str
    deliveries: int
    success: int
    failed: int


class EventTypeActivity(msgspec.Struct, kw_only=True):
    """Deliveries of one event type in a stats window."""

    event_type: str
    deliveries: int


class DeliveryStats(msgspec.Struct, kw_only=True):
    """Delivery figures since a point in time (deliveries by creation, latencies by attempt start)."""

    since: datetime
    deliveries: int
    success: int
    failed: int
    pending: int
    success_rate: float
    """``success / deliveries``; 0.0 when there were none."""
    failure_rate: float
    """``failed / deliveries``; 0.0 when there were none."""
    latency_p50_ms: float | None
    """Percentiles (linear interpolation) of attempt latencies; ``None`` without attempts."""
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    most_active_subscriptions: list[SubscriptionActivity]
    """The 10 subscriptions with the most deliveries."""
    top_event_types: list[EventTypeActivity]
    """The 10 event types with the most deliveries."""
    active_subscriptions: int
    """Subscriptions whose status is ``active`` now."""


class RecordResult(msgspec.Struct, kw_only=True):
    """What :meth:`DeliveryStore.record` did with a batch of attempts."""

    recorded: int = 0
    """Attempts newly stored."""
    duplicates: int = 0
    """Attempts already stored (the recorder is at-least-once) or repeated in the batch."""
    skipped: int = 0
    """Attempts of subscriptions that no longer exist."""
    failing: list[tuple[uuid.UUID, str]] = msgspec.field(default_factory=list)
    """(subscription id, reason) of subscriptions now over the failure threshold: to disable."""
    gone: list[tuple[uuid.UUID, str]] = msgspec.field(default_factory=list)
    """(subscription id, reason) of subscriptions whose receiver answered 410 Gone: to disable."""

    def to_disable(self) -> dict[uuid.UUID, str]:
        """Every subscription to disable, with its reason (a 410 wins over the threshold)."""
        return dict(self.failing) | dict(self.gone)


class SubscriptionStore:
    """Subscriptions in SQL. Validation, ids, secrets and timestamps are the caller's job."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, sub: Subscription) -> Subscription:
        """Store a new subscription; :class:`ConflictError` if its name or id is taken."""
        try:
            async with self._db.transaction() as session:
                await _refuse_taken_name(session, sub.name, sub.id)
                if await session.get(SubscriptionRow, sub.id) is not None:
                    raise ConflictError(f"subscription {sub.id} already exists")
                session.add(
                    SubscriptionRow(
                        id=sub.id,
                        created_at=sub.created_at,
                        updated_at=sub.updated_at,
                        consecutive_failures=sub.consecutive_failures,
                        first_failure_at=sub.first_failure_at,
                        **_mutable_values(sub),
                    )
                )
        except IntegrityError as exc:
            await self._explain_integrity_error(sub, exc)
        return await self.get(sub.id)

    async def _explain_integrity_error(self, sub: Subscription, exc: IntegrityError, *, creating: bool = True) -> None:
        """Raise :class:`ConflictError` when a concurrent write took the name (or id); else ``exc``."""
        # The checks inside the transaction passed: another writer won the race since.
        async with self._db.session() as session:
            await _refuse_taken_name(session, sub.name, sub.id)
            if creating and await session.get(SubscriptionRow, sub.id) is not None:
                raise ConflictError(f"subscription {sub.id} already exists") from exc
        raise exc

    async def get(self, subscription_id: uuid.UUID) -> Subscription:
        """The subscription; :class:`NotFoundError` if there is none with that id."""
        async with self._db.session() as session:
            row = await session.get(SubscriptionRow, subscription_id)
            if row is None:
                raise _subscription_not_found(subscription_id)
            return _subscription(row)

    async def list(
        self,
        *,
        status: SubscriptionStatus | None = None,
        integration: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Subscription]:
        """Subscriptions, oldest first, optionally of one status and/or integration."""
        query = (
            select(SubscriptionRow)
            .where(*_subscription_filters(status, integration))
            .order_by(SubscriptionRow.created_at, SubscriptionRow.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._db.session() as session:
            return [_subscription(row) for row in await session.scalars(query)]

    async def count(self, *, status: SubscriptionStatus | None = None, integration: str | None = None) -> int:
        """How many subscriptions :meth:`list` would page through."""
        query = select(func.count()).select_from(SubscriptionRow).where(*_subscription_filters(status, integration))
        async with self._db.session() as session:
            return (await session.execute(query)).scalar_one()

    async def update(self, sub: Subscription) -> Subscription:
        """Write every user-editable field of ``sub`` and bump ``updated_at``.

        The failure counters belong to :meth:`DeliveryStore.record` and are not
        taken from ``sub``, except that they restart from zero when the status
        becomes ``active`` again (re-enabling must not re-disable at the next failure).
        """
        try:
            async with self._db.transaction() as session:
                row = await session.get(SubscriptionRow, sub.id, with_for_update=True)
                if row is None:
                    raise _subscription_not_found(sub.id)
                await _refuse_taken_name(session, sub.name, sub.id)
                reactivated = row.status != "active" and sub.status == "active"
                for key, value in _mutable_values(sub).items():
                    setattr(row, key, value)
                row.updated_at = _now()
                if reactivated:
                    row.consecutive_failures = 0
                    row.first_failure_at = None
        except IntegrityError as exc:
            await self._explain_integrity_error(sub, exc, creating=False)
        return await self.get(sub.id)

    async def disable(self, subscription_id: uuid.UUID, reason: str) -> Subscription | None:
        """Set status ``disabled`` with ``reason``; ``None`` if missing or disabled already.

        It lives here rather than on :class:`DeliveryStore` because it changes a
        subscription; the recorder calls it for :meth:`RecordResult.to_disable`.
        """
        async with self._db.transaction() as session:
            row = await session.get(SubscriptionRow, subscription_id, with_for_update=True)
            if row is None or row.status == "disabled":
                return None
            row.status = "disabled"
            row.active = False
            row.disabled_reason = reason
            row.updated_at = _now()
            await session.flush()
            return _subscription(row)

    async def delete(self, subscription_id: uuid.UUID) -> None:
        """Delete the subscription and (by cascade) its deliveries; :class:`NotFoundError` if missing."""
        async with self._db.transaction() as session:
            result = await session.execute(delete(SubscriptionRow).where(SubscriptionRow.id == subscription_id))
            if cast(CursorResult[Any], result).rowcount == 0:
                raise _subscription_not_found(subscription_id)

    async def all_for_mirror(self) -> builtins.list[Subscription]:
        """Every subscription, whatever its status, oldest first (to rebuild the workers' mirror)."""
        query = select(SubscriptionRow).order_by(SubscriptionRow.created_at, SubscriptionRow.id)
        async with self._db.session() as session:
            return [_subscription(row) for row in await session.scalars(query)]


class DeliveryStore:
    """Deliveries and their attempts in SQL: written by the recorder, read by the gateway."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert_deliveries = self._insert_ignoring_duplicates(_DELIVERIES, "id").returning(_DELIVERIES.c.id)
        self._insert_attempts = self._insert_ignoring_duplicates(_ATTEMPTS, "attempt_id").returning(
            _ATTEMPTS.c.attempt_id
        )

    async def record(
        self,
        attempts: Sequence[AttemptRecord],
        *,
        disable_after_failures: int,
        disable_after_period: float,
    ) -> RecordResult:
        """Store a batch of attempts in one transaction; idempotent, and order does not matter.

        Each new attempt gets a row (one already stored is ignored); its delivery
        is created or updated: ``success`` once any attempt succeeded, else the
        status and the answer of the attempt that finished last. A delivery that
        becomes ``failed`` counts one more consecutive failure for its
        subscription, one that becomes ``success`` resets the count. Subscriptions
        with at least ``disable_after_failures`` (0: never) failing for at least
        ``disable_after_period`` seconds come back in :attr:`RecordResult.failing`.
        """
        batch: dict[uuid.UUID, AttemptRecord] = {}
        for record in attempts:
            batch.setdefault(record.attempt_id, record)
        result = RecordResult(duplicates=len(attempts) - len(batch))
        if not batch:
            return result
        async with self._db.transaction() as session:
            # SQLAlchemy Core on the session's connection: no ORM objects, one
            # statement per step for the whole batch (executemany where it writes).
            connection = await session.connection()
            # Locks, always in the same order (subscriptions, then deliveries, by id),
            # so that concurrent recorders on PostgreSQL queue instead of deadlocking.
            # SQLite ignores FOR UPDATE: its transaction already holds the write lock.
            subscriptions = {
                row.id: _Counters(row.id, row.status, row.consecutive_failures, row.first_failure_at)
                for row in await _select_in(
                    connection, _LOCK_SUBSCRIPTIONS, {a.subscription_id for a in batch.values()}
                )
            }
            kept = [a for a in batch.values() if a.subscription_id in subscriptions]
            result.skipped = len(batch) - len(kept)
            if not kept:
                return result
            by_delivery: dict[uuid.UUID, list[AttemptRecord]] = defaultdict(list)
            for record in kept:
                by_delivery[record.delivery_id].append(record)

            stored: dict[uuid.UUID, dict[str, Any]] = {
                row.id: row._asdict() for row in await _select_in(connection, _LOCK_DELIVERIES, by_delivery)
            }
            # (when, subscription id, new status) of deliveries that became success or failed.
            transitions: dict[uuid.UUID, tuple[datetime, uuid.UUID, DeliveryStatus] | None] = {}
            # A delivery not stored yet has none of its attempts stored either (they
            # reference it): its final row is computed here and inserted at once.
            fresh: dict[uuid.UUID, dict[str, Any]] = {}
            for delivery_id in sorted(by_delivery.keys() - stored.keys()):
                row = fresh[delivery_id] = _new_delivery_values(delivery_id, by_delivery[delivery_id])
                transitions[delivery_id] = _apply_attempts(row, by_delivery[delivery_id])
            if fresh:
                created = set(await connection.scalars(self._insert_deliveries, list(fresh.values())))
                if raced := fresh.keys() - created:
                    # Created meanwhile by another writer: locked and updated like stored ones.
                    for delivery_id in raced:
                        del fresh[delivery_id], transitions[delivery_id]
                    stored.update(
                        (row.id, row._asdict()) for row in await _select_in(connection, _LOCK_DELIVERIES, raced)
                    )
            inserted = set(await connection.scalars(self._insert_attempts, [_attempt_values(r) for r in kept]))
            result.recorded = len(inserted)
            result.duplicates += len(kept) - len(inserted)

            # UPDATEs grouped by the columns they set: one executemany per group.
            updates: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
            for delivery_id in fresh:
                records = by_delivery[delivery_id]
                if all(record.attempt_id in inserted for record in records):
                    continue
                # Only if a stored attempt names another delivery than its record does: redo the row.
                row = _new_delivery_values(delivery_id, records)
                transitions[delivery_id] = _apply_attempts(row, [r for r in records if r.attempt_id in inserted])
                _add_update(updates, delivery_id, row)
            for delivery_id, row in stored.items():
                new = [record for record in by_delivery[delivery_id] if record.attempt_id in inserted]
                if new:
                    transitions[delivery_id] = _apply_attempts(row, new)
                    _add_update(updates, delivery_id, row)
            for params in updates.values():
                await connection.execute(_UPDATE_DELIVERY, sorted(params, key=lambda p: p["b_id"]))

            failed_more = _count_failures(
                subscriptions, [t for d in by_delivery if (t := transitions.get(d)) is not None]
            )
            counters = [
                {"b_id": c.id, "consecutive_failures": c.consecutive_failures, "first_failure_at": c.first_failure_at}
                for _, c in sorted(subscriptions.items())
                if c.changed()
            ]
            if counters:
                await connection.execute(_UPDATE_COUNTERS, counters)
            result.failing = _over_threshold(
                [subscriptions[i] for i in sorted(failed_more)], disable_after_failures, disable_after_period
            )
            for record in kept:
                subscription = subscriptions[record.subscription_id]
                if (
                    record.attempt_id in inserted
                    and record.disable_subscription
                    and subscription.status != "disabled"
                    and all(gone_id != subscription.id for gone_id, _ in result.gone)
                ):
                    result.gone.append((subscription.id, record.disable_subscription))
        return result

    async def list(
        self,
        *,
        subscription_id: uuid.UUID | None = None,
        status: DeliveryStatus | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[DeliverySummary]:
        """Deliveries, newest first; ``since`` (inclusive) and ``until`` (exclusive) bound ``created_at``."""
        query = (
            select(DeliveryRow)
            .options(defer(DeliveryRow.payload), defer(DeliveryRow.response_body))
            .where(*_delivery_filters(subscription_id, status, event_type, since, until))
            .order_by(DeliveryRow.created_at.desc(), DeliveryRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._db.session() as session:
            return [DeliverySummary(**_summary_values(row)) for row in await session.scalars(query)]

    async def count(
        self,
        *,
        subscription_id: uuid.UUID | None = None,
        status: DeliveryStatus | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many deliveries :meth:`list` would page through."""
        query = (
            select(func.count())
            .select_from(DeliveryRow)
            .where(*_delivery_filters(subscription_id, status, event_type, since, until))
        )
        async with self._db.session() as session:
            return (await session.execute(query)).scalar_one()

    async def get(self, delivery_id: uuid.UUID) -> DeliveryDetail:
        """The delivery with its attempts; :class:`NotFoundError` if there is none with that id."""
        async with self._db.session() as session:
            row = await session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFoundError(f"delivery {delivery_id} not found")
            attempts = await session.scalars(
                select(AttemptRow)
                .where(AttemptRow.delivery_id == delivery_id)
                .order_by(AttemptRow.started_at, AttemptRow.finished_at, AttemptRow.attempt)
            )
            return DeliveryDetail(
                **_summary_values(row),
                response_body=row.response_body,
                payload=_payload_bytes(row.payload),
                attempt_log=[_attempt_detail(attempt) for attempt in attempts],
            )

    async def failed_since(self, subscription_id: uuid.UUID, since: datetime) -> builtins.list[DeliverySummary]:
        """The subscription's ``failed`` deliveries created at or after ``since``, oldest first (to recover)."""
        query = (
            select(DeliveryRow)
            .options(defer(DeliveryRow.payload), defer(DeliveryRow.response_body))
            .where(*_delivery_filters(subscription_id, "failed", None, since, None))
            .order_by(DeliveryRow.created_at, DeliveryRow.id)
        )
        async with self._db.session() as session:
            return [DeliverySummary(**_summary_values(row)) for row in await session.scalars(query)]

    async def stats(self, since: datetime) -> DeliveryStats:
        """Totals, rates, latency percentiles and the busiest subscriptions and event types since ``since``."""
        in_window = DeliveryRow.created_at >= since
        deliveries = func.count().label("deliveries")
        async with self._db.session() as session:
            by_status: dict[str, int] = {
                status: count
                for status, count in (
                    await session.execute(
                        select(DeliveryRow.status, func.count()).where(in_window).group_by(DeliveryRow.status)
                    )
                )
            }
            # Sorted in SQL, percentiles in Python: fine at this scale, and the same on both databases.
            latencies: builtins.list[float] = [
                latency
                for latency in await session.scalars(
                    select(AttemptRow.latency_ms)
                    .where(AttemptRow.started_at >= since, AttemptRow.latency_ms.is_not(None))
                    .order_by(AttemptRow.latency_ms)
                )
                if latency is not None
            ]
            busiest = await session.execute(
                select(
                    SubscriptionRow.id,
                    SubscriptionRow.name,
                    deliveries,
                    func.sum(case((DeliveryRow.status == "success", 1), else_=0)),
                    func.sum(case((DeliveryRow.status == "failed", 1), else_=0)),
                )
                .join(SubscriptionRow, SubscriptionRow.id == DeliveryRow.subscription_id)
                .where(in_window)
                .group_by(SubscriptionRow.id, SubscriptionRow.name)
                .order_by(deliveries.desc(), SubscriptionRow.name)
                .limit(10)
            )
            event_types = await session.execute(
                select(DeliveryRow.event_type, deliveries)
                .where(in_window)
                .group_by(DeliveryRow.event_type)
                .order_by(deliveries.desc(), DeliveryRow.event_type)
                .limit(10)
            )
            active = (
                await session.execute(
                    select(func.count()).select_from(SubscriptionRow).where(SubscriptionRow.status == "active")
                )
            ).scalar_one()
            total = sum(by_status.values())
            return DeliveryStats(
                since=_utc(since),
                deliveries=total,
                success=by_status.get("success", 0),
                failed=by_status.get("failed", 0),
                pending=by_status.get("pending", 0),
                success_rate=by_status.get("success", 0) / total if total else 0.0,
                failure_rate=by_status.get("failed", 0) / total if total else 0.0,
                latency_p50_ms=_percentile(latencies, 0.50),
                latency_p95_ms=_percentile(latencies, 0.95),
                latency_p99_ms=_percentile(latencies, 0.99),
                most_active_subscriptions=[
                    SubscriptionActivity(
                        subscription_id=sub_id, name=name, deliveries=count, success=int(ok or 0), failed=int(ko or 0)
                    )
                    for sub_id, name, count, ok, ko in busiest
                ],
                top_event_types=[
                    EventTypeActivity(event_type=event_type, deliveries=count) for event_type, count in event_types
                ],
                active_subscriptions=active,
            )

    def _insert_ignoring_duplicates(self, table: Table, key: str) -> Insert:
        """``INSERT ... ON CONFLICT (key) DO NOTHING``: safe against a concurrent recorder and redeliveries."""
        if self._db.dialect_name == "postgresql":
            return postgresql_insert(table).on_conflict_do_nothing(index_elements=[key])
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])


# --- subscriptions ---------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC (as msgspec decodes one without offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _subscription_not_found(subscription_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"subscription {subscription_id} not found")


async def _refuse_taken_name(session: AsyncSession, name: str, own_id: uuid.UUID) -> None:
    taken = await session.scalar(
        select(SubscriptionRow.id).where(SubscriptionRow.name == name, SubscriptionRow.id != own_id)
    )
    if taken is not None:
        raise ConflictError(f"a subscription named {name!r} already exists ({taken}); choose another name")


def _mutable_values(sub: Subscription) -> dict[str, Any]:
    """The columns an update writes from ``sub``: not the id, timestamps nor failure counters."""
    return {
        "name": sub.name,
        "url": sub.url,
        "event_types": list(sub.event_types),
        "integration": sub.integration,
        "integration_config": dict(sub.integration_config),
        "headers": dict(sub.headers),
        "status": sub.status,
        "active": sub.status == "active",
        # An active subscription has no reason to be disabled.
        "disabled_reason": None if sub.status == "active" else sub.disabled_reason,
        "secret_token": sub.secret,
        "previous_secret": sub.previous_secret,
        "previous_secret_expires_at": sub.previous_secret_expires_at,
        "filters": sub.filters,
        "retry_schedule": None if sub.retry_schedule is None else [float(d) for d in sub.retry_schedule],
        "max_in_flight": sub.max_in_flight,
    }


def _subscription(row: SubscriptionRow) -> Subscription:
    return Subscription(
        id=row.id,
        name=row.name,
        url=row.url,
        event_types=list(row.event_types),
        integration=row.integration,
        integration_config=dict(row.integration_config),
        headers=dict(row.headers),
        status=cast(SubscriptionStatus, row.status),
        disabled_reason=row.disabled_reason,
        secret=row.secret_token,
        previous_secret=row.previous_secret,
        previous_secret_expires_at=row.previous_secret_expires_at,
        filters=row.filters,
        retry_schedule=row.retry_schedule,
        max_in_flight=row.max_in_flight,
        consecutive_failures=row.consecutive_failures,
        first_failure_at=row.first_failure_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _subscription_filters(status: str | None, integration: str | None) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if status is not None:
        filters.append(SubscriptionRow.status == status)
    if integration is not None:
        filters.append(SubscriptionRow.integration == integration)
    return filters


# --- recording attempts ------------------------------------------------------------

_SUBSCRIPTIONS: Final = cast(Table, SubscriptionRow.__table__)
_DELIVERIES: Final = cast(Table, DeliveryRow.__table__)
_ATTEMPTS: Final = cast(Table, AttemptRow.__table__)

_LOCK_SUBSCRIPTIONS: Final = (
    select(
        _SUBSCRIPTIONS.c.id,
        _SUBSCRIPTIONS.c.status,
        _SUBSCRIPTIONS.c.consecutive_failures,
        _SUBSCRIPTIONS.c.first_failure_at,
    )
    .where(_SUBSCRIPTIONS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_SUBSCRIPTIONS.c.id)
    .with_for_update()
)
"""The failure counters of the subscriptions in ``ids``, locked."""

_LOCK_DELIVERIES: Final = (
    select(
        _DELIVERIES.c.id,
        _DELIVERIES.c.subscription_id,
        _DELIVERIES.c.attempts,
        _DELIVERIES.c.status,
        _DELIVERIES.c.delivered_at,
        _DELIVERIES.c.last_attempt_at,
        _DELIVERIES.c.next_attempt_at,
    )
    .where(_DELIVERIES.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_DELIVERIES.c.id)
    .with_for_update()
)
"""What :func:`_apply_attempts` reads of the stored deliveries in ``ids``, locked."""

# The SET clause comes from the keys of the parameters ("b_id" names the row).
_UPDATE_DELIVERY: Final = update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
_UPDATE_COUNTERS: Final = update(_SUBSCRIPTIONS).where(_SUBSCRIPTIONS.c.id == bindparam("b_id"))


class _Counters:
    """The failure counters of a subscription, as read and as updated by a batch."""

    __slots__ = ("_read", "consecutive_failures", "first_failure_at", "id", "status")

    def __init__(
        self, subscription_id: uuid.UUID, status: str, consecutive_failures: int, first_failure_at: datetime | None
    ) -> None:
        self.id = subscription_id
        self.status = status
        self.consecutive_failures = consecutive_failures
        self.first_failure_at = first_failure_at
        self._read = (consecutive_failures, first_failure_at)

    def changed(self) -> bool:
        return (self.consecutive_failures, self.first_failure_at) != self._read


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _select_in(
    connection: AsyncConnection, query: Select[Any], ids: set[uuid.UUID] | dict[uuid.UUID, Any]
) -> list[Row[Any]]:
    """Rows of ``query`` for the ``ids``, in id order, in chunks of :data:`_IN_CHUNK`."""
    rows: list[Row[Any]] = []
    for chunk in _chunks(sorted(ids), _IN_CHUNK):
        rows.extend(await connection.execute(query, {"ids": chunk}))
    return rows


def _clean_text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a receiver's answer may contain one.
    return None if value is None else value.replace("\x00", "\ufffd")


def _payload_json(body: bytes) -> Any:
    """The JSON document stored for a request body; a body that is not JSON is kept as a string."""
    if not body:
        return None
    # JSONB refuses the NUL character, even escaped.
    body = body.replace(b"\\u0000", b"\\ufffd")
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _payload_bytes(document: Any) -> bytes:
    """The request body back from its stored JSON (a string is a body that was not JSON)."""
    if document is None:
        return b""
    if isinstance(document, str):
        return document.encode()
    return msgspec.json.encode(document)


def _new_delivery_values(delivery_id: uuid.UUID, records: list[AttemptRecord]) -> dict[str, Any]:
    """The row of a delivery seen for the first time, before its attempts are applied."""
    first = min(records, key=lambda r: _utc(r.started_at))
    return {
        "id": delivery_id,
        "subscription_id": first.subscription_id,
        "event_id": first.event_id,
        "event_type": first.event_type,
        "payload": JSON.NULL,  # until an attempt carries a body
        "status": "pending",
        "response_code": None,
        "response_body": None,
        "error_message": None,
        "attempts": 0,
        "created_at": _utc(first.started_at),
        "delivered_at": None,
        "last_attempt_at": None,
        "next_attempt_at": None,
        "latency_ms": None,
        "trigger": first.trigger,
        "stream_seq": first.stream_seq,
    }


def _attempt_values(record: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt_id": record.attempt_id,
        "delivery_id": record.delivery_id,
        "attempt": record.attempt,
        "outcome": record.outcome,
        "trigger": record.trigger,
        "request_url": record.request_url,
        "request_headers": record.request_headers,
        "response_code": record.response_code,
        "response_headers": record.response_headers,
        "response_body": _clean_text(record.response_body),
        "error": _clean_text(record.error),
        "latency_ms": record.latency_ms,
        "started_at": _utc(record.started_at),
        "finished_at": _utc(record.finished_at),
        "next_attempt_at": None if record.next_attempt_at is None else _utc(record.next_attempt_at),
    }


def _finish_order(record: AttemptRecord) -> tuple[datetime, int]:
    return _utc(record.finished_at), record.attempt


def _apply_attempts(row: dict[str, Any], new: list[AttemptRecord]) -> tuple[datetime, uuid.UUID, DeliveryStatus] | None:
    """Fold newly stored attempts into their delivery's values; the transition to success or failed, if any.

    ``row`` holds at least what :data:`_LOCK_DELIVERIES` reads; the columns it
    gains here are the ones to write besides those.
    """
    before = row["status"] if row["attempts"] else None  # None: the row is created by this batch
    carrier: AttemptRecord | None = None  # the latest attempt with a body
    for record in sorted(new, key=_finish_order) if len(new) > 1 else new:
        finished = _utc(record.finished_at)
        row["attempts"] += 1
        if record.outcome == "success" and (row["delivered_at"] is None or finished < row["delivered_at"]):
            row["delivered_at"] = finished
        if row["last_attempt_at"] is not None and finished < row["last_attempt_at"]:
            continue  # an older attempt arriving late: counted, but not the latest answer
        row["last_attempt_at"] = finished
        row["status"] = _STATUS_AFTER[record.outcome]
        row["trigger"] = record.trigger
        row["response_code"] = record.response_code
        row["response_body"] = _clean_text(record.response_body)
        row["error_message"] = _clean_text(record.error)
        row["latency_ms"] = record.latency_ms
        row["next_attempt_at"] = None if record.next_attempt_at is None else _utc(record.next_attempt_at)
        if record.stream_seq is not None:
            row["stream_seq"] = record.stream_seq
        if record.payload:
            carrier = record
    if carrier is not None:
        row["payload"] = _payload_json(carrier.payload)
    if row["delivered_at"] is not None:
        row["status"] = "success"  # sticky: a later failure of a replay does not undo a delivery
        row["next_attempt_at"] = None
    status: DeliveryStatus = row["status"]
    if status == before or status == "pending":
        return None
    when: datetime | None = row["delivered_at"] if status == "success" else row["last_attempt_at"]
    assert when is not None
    return when, row["subscription_id"], status


def _add_update(
    updates: dict[frozenset[str], list[dict[str, Any]]], delivery_id: uuid.UUID, row: dict[str, Any]
) -> None:
    """Queue the UPDATE of a delivery to ``row``, with the others that set the same columns."""
    params = {key: value for key, value in row.items() if key != "id" and key != "subscription_id"}
    updates[frozenset(params)].append(params)
    params["b_id"] = delivery_id


def _count_failures(
    subscriptions: dict[uuid.UUID, _Counters], transitions: list[tuple[datetime, uuid.UUID, DeliveryStatus]]
) -> set[uuid.UUID]:
    """Apply the transitions in time order to the failure counters; the subscriptions that failed more."""
    failed_more: set[uuid.UUID] = set()
    for when, subscription_id, status in sorted(transitions, key=lambda t: t[0]):
        subscription = subscriptions[subscription_id]
        if status == "success":
            subscription.consecutive_failures = 0
            subscription.first_failure_at = None
            failed_more.discard(subscription_id)
        else:
            if subscription.consecutive_failures == 0 or subscription.first_failure_at is None:
                subscription.first_failure_at = when
            subscription.consecutive_failures += 1
            failed_more.add(subscription_id)
    return failed_more


def _over_threshold(
    subscriptions: list[_Counters], disable_after_failures: int, disable_after_period: float
) -> list[tuple[uuid.UUID, str]]:
    if disable_after_failures <= 0:
        return []
    now = _now()
    over: list[tuple[uuid.UUID, str]] = []
    for subscription in subscriptions:
        first = subscription.first_failure_at
        if (
            subscription.status != "disabled"
            and subscription.consecutive_failures >= disable_after_failures
            and first is not None
            and (now - first).total_seconds() >= disable_after_period
        ):
            reason = (
                f"{subscription.consecutive_failures} consecutive deliveries failed"
                f" since {first.isoformat(timespec='seconds')}"
            )
            over.append((subscription.id, reason))
    return over


# --- reading deliveries ------------------------------------------------------------


def _delivery_filters(
    subscription_id: uuid.UUID | None,
    status: str | None,
    event_type: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if subscription_id is not None:
        filters.append(DeliveryRow.subscription_id == subscription_id)
    if status is not None:
        filters.append(DeliveryRow.status == status)
    if event_type is not None:
        filters.append(DeliveryRow.event_type == event_type)
    if since is not None:
        filters.append(DeliveryRow.created_at >= since)
    if until is not None:
        filters.append(DeliveryRow.created_at < until)
    return filters


def _summary_values(row: DeliveryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "subscription_id": row.subscription_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "status": row.status,
        "trigger": row.trigger,
        "attempts": row.attempts,
        "response_code": row.response_code,
        "error_message": row.error_message,
        "latency_ms": row.latency_ms,
        "stream_seq": row.stream_seq,
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
        "last_attempt_at": row.last_attempt_at,
        "next_attempt_at": row.next_attempt_at,
    }


def _attempt_detail(row: AttemptRow) -> AttemptDetail:
    return AttemptDetail(
        attempt_id=row.attempt_id,
        delivery_id=row.delivery_id,
        attempt=row.attempt,
        outcome=cast(AttemptOutcome, row.outcome),
        trigger=cast(AttemptTrigger, row.trigger),
        request_url=row.request_url,
        request_headers=dict(row.request_headers),
        response_code=row.response_code,
        response_headers=dict(row.response_headers),
        response_body=row.response_body,
        error=row.error,
        latency_ms=row.latency_ms,
        started_at=row.started_at,
        finished_at=row.finished_at,
        next_attempt_at=row.next_attempt_at,
    )


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, interpolated linearly (numpy's default)."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
