"""Recording attempts: the recorder's batches become deliveries, attempts and subscription counters."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec
from sqlalchemy import (
    JSON,
    Insert,
    Row,
    Select,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .._messages import (
    AttemptRecord,
    DeliveryStatus,
)
from ._database import Database
from ._views import (
    ATTEMPTS,
    DELIVERIES,
    SUBSCRIPTIONS,
    RecordResult,
    now,
    utc,
)

__all__ = ("DeliveryRecording",)

_T = TypeVar("_T")


# Ids per "IN (...)" list: far below the bind-parameter limits of SQLite (32766)
# and PostgreSQL (32767), whatever size of batch the recorder hands over.
_IN_CHUNK: Final = 1000


_STATUS_AFTER: Final[dict[str, DeliveryStatus]] = {"success": "success", "retrying": "pending", "failed": "failed"}
"""A delivery's status when its latest attempt had this outcome."""


class DeliveryRecording:
    """The write side of :class:`~consumers.log.DeliveryStore`: one transaction per batch."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert_deliveries = self._insert_ignoring_duplicates(DELIVERIES, "id").returning(DELIVERIES.c.id)
        self._insert_attempts = self._insert_ignoring_duplicates(ATTEMPTS, "attempt_id").returning(
            ATTEMPTS.c.attempt_id
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
            held = batch.get(record.attempt_id)
            if held is None or (held.outcome == "pending" and record.outcome != "pending"):
                batch[record.attempt_id] = record  # the answer supersedes the record written ahead
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
                transitions[delivery_id] = _apply_attempts(row, by_delivery[delivery_id], set())
            if fresh:
                created = set(await connection.scalars(self._insert_deliveries, list(fresh.values())))
                if raced := fresh.keys() - created:
                    # Created meanwhile by another writer: locked and updated like stored ones.
                    for delivery_id in raced:
                        del fresh[delivery_id], transitions[delivery_id]
                    stored.update(
                        (row.id, row._asdict()) for row in await _select_in(connection, _LOCK_DELIVERIES, raced)
                    )
            # Attempts written ahead (pending) that this batch completes: their rows are updated.
            known: dict[uuid.UUID, str] = {}
            if stored:
                ids = {r.attempt_id for r in kept if r.delivery_id in stored}
                known = {row.attempt_id: row.outcome for row in await _select_in(connection, _STORED_ATTEMPTS, ids)}
            completing = [r for r in kept if known.get(r.attempt_id) == "pending" and r.outcome != "pending"]
            completed = {r.attempt_id for r in completing}
            if completing:
                await connection.execute(
                    _COMPLETE_ATTEMPT,
                    [{**_attempt_values(r), "b_id": r.attempt_id} for r in sorted(completing, key=_by_id)],
                )
            fresh_attempts = [_attempt_values(r) for r in kept if r.attempt_id not in known]
            inserted = set(await connection.scalars(self._insert_attempts, fresh_attempts)) if fresh_attempts else set()
            result.recorded = len(inserted) + len(completed)
            result.duplicates += len(kept) - result.recorded

            # UPDATEs grouped by the columns they set: one executemany per group.
            updates: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
            for delivery_id in fresh:
                records = by_delivery[delivery_id]
                if all(record.attempt_id in inserted for record in records):
                    continue
                # Only if a stored attempt names another delivery than its record does: redo the row.
                row = _new_delivery_values(delivery_id, records)
                transitions[delivery_id] = _apply_attempts(row, [r for r in records if r.attempt_id in inserted], set())
                _add_update(updates, delivery_id, row)
            for delivery_id, row in stored.items():
                new = [r for r in by_delivery[delivery_id] if r.attempt_id in inserted or r.attempt_id in completed]
                if new:
                    transitions[delivery_id] = _apply_attempts(row, new, completed)
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
                    (record.attempt_id in inserted or record.attempt_id in completed)
                    and record.disable_subscription
                    and subscription.status != "disabled"
                    and all(gone_id != subscription.id for gone_id, _ in result.gone)
                ):
                    result.gone.append((subscription.id, record.disable_subscription))
        return result

    def _insert_ignoring_duplicates(self, table: Table, key: str) -> Insert:
        """``INSERT ... ON CONFLICT (key) DO NOTHING``: safe against a concurrent recorder and redeliveries."""
        if self._db.dialect_name == "postgresql":
            return postgresql_insert(table).on_conflict_do_nothing(index_elements=[key])
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])


_LOCK_SUBSCRIPTIONS: Final = (
    select(
        SUBSCRIPTIONS.c.id,
        SUBSCRIPTIONS.c.status,
        SUBSCRIPTIONS.c.consecutive_failures,
        SUBSCRIPTIONS.c.first_failure_at,
    )
    .where(SUBSCRIPTIONS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(SUBSCRIPTIONS.c.id)
    .with_for_update()
)
"""The failure counters of the subscriptions in ``ids``, locked."""


_LOCK_DELIVERIES: Final = (
    select(
        DELIVERIES.c.id,
        DELIVERIES.c.subscription_id,
        DELIVERIES.c.attempts,
        DELIVERIES.c.status,
        DELIVERIES.c.delivered_at,
        DELIVERIES.c.last_attempt_at,
        DELIVERIES.c.next_attempt_at,
    )
    .where(DELIVERIES.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(DELIVERIES.c.id)
    .with_for_update()
)
"""What :func:`_apply_attempts` reads of the stored deliveries in ``ids``, locked."""


_STORED_ATTEMPTS: Final = select(ATTEMPTS.c.attempt_id, ATTEMPTS.c.outcome).where(
    ATTEMPTS.c.attempt_id.in_(bindparam("ids", expanding=True))
)
"""The outcome of the attempts in ``ids`` already stored (``pending``: written ahead, to be completed)."""

_COMPLETE_ATTEMPT: Final = (
    update(ATTEMPTS).where(ATTEMPTS.c.attempt_id == bindparam("b_id")).where(ATTEMPTS.c.outcome == "pending")
)
"""The answer of an attempt written ahead: its row takes the final values."""


def _by_id(record: AttemptRecord) -> uuid.UUID:
    return record.attempt_id


# The SET clause comes from the keys of the parameters ("b_id" names the row).
_UPDATE_DELIVERY: Final = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("b_id"))


_UPDATE_COUNTERS: Final = update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == bindparam("b_id"))


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


def _new_delivery_values(delivery_id: uuid.UUID, records: list[AttemptRecord]) -> dict[str, Any]:
    """The row of a delivery seen for the first time, before its attempts are applied."""
    first = min(records, key=lambda r: utc(r.started_at))
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
        "created_at": utc(first.started_at),
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
        "started_at": utc(record.started_at),
        "finished_at": utc(record.finished_at),
        "next_attempt_at": None if record.next_attempt_at is None else utc(record.next_attempt_at),
    }


def _finish_order(record: AttemptRecord) -> tuple[datetime, int]:
    return utc(record.finished_at), record.attempt


def _apply_attempts(
    row: dict[str, Any], new: list[AttemptRecord], completed: set[uuid.UUID]
) -> tuple[datetime, uuid.UUID, DeliveryStatus] | None:
    """Fold newly stored attempts into their delivery's values; the transition to success or failed, if any.

    ``row`` holds at least what :data:`_LOCK_DELIVERIES` reads; the columns it
    gains here are the ones to write besides those. An attempt written ahead
    (``pending``) counts, and changes nothing else (the request is out, its
    answer unknown); the answer of one already counted (in ``completed``)
    applies its outcome without counting again.
    """
    before = row["status"] if row["attempts"] else None  # None: the row is created by this batch
    carrier: AttemptRecord | None = None  # the latest attempt with a body
    for record in sorted(new, key=_finish_order) if len(new) > 1 else new:
        finished = utc(record.finished_at)
        if record.attempt_id not in completed:
            row["attempts"] += 1
        if record.outcome == "pending":
            continue
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
        row["next_attempt_at"] = None if record.next_attempt_at is None else utc(record.next_attempt_at)
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
    moment = now()
    over: list[tuple[uuid.UUID, str]] = []
    for subscription in subscriptions:
        first = subscription.first_failure_at
        if (
            subscription.status != "disabled"
            and subscription.consecutive_failures >= disable_after_failures
            and first is not None
            and (moment - first).total_seconds() >= disable_after_period
        ):
            reason = (
                f"{subscription.consecutive_failures} consecutive deliveries failed"
                f" since {first.isoformat(timespec='seconds')}"
            )
            over.append((subscription.id, reason))
    return over
