"""Recording attempts: the recorder's batches become deliveries, attempts and subscription counters."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Dialect,
    Insert,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .._messages import (
    AttemptRecord,
    DeliveryStatus,
    SkipCount,
)
from ._counts import add_skip_counts, skip_upsert
from ._database import Database
from ._driver import DriverStatement, driver_insert, driver_update
from ._rows import (
    Counters,
    add_update,
    apply_attempts,
    attempt_values,
    count_failures,
    new_delivery_values,
    over_threshold,
    select_in,
)
from ._views import (
    ATTEMPTS,
    DELIVERIES,
    SUBSCRIPTIONS,
    RecordResult,
)

__all__ = ("DeliveryRecording",)


class DeliveryRecording:
    """The write side of :class:`~consumers.log.DeliveryStore`: one transaction per batch."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert_deliveries = self._insert_ignoring_duplicates(DELIVERIES, "id").returning(DELIVERIES.c.id)
        self._insert_attempts = self._insert_ignoring_duplicates(ATTEMPTS, "attempt_id").returning(
            ATTEMPTS.c.attempt_id
        )
        self._upsert_skips = skip_upsert(db.dialect_name)
        self._driver = _SqliteWrites(db.engine.dialect) if db.dialect_name == "sqlite" else None

    async def record(
        self,
        attempts: Sequence[AttemptRecord],
        *,
        disable_after_failures: int,
        disable_after_period: float,
        skips: Sequence[SkipCount] = (),
    ) -> RecordResult:
        """Store a batch of attempts in one transaction; idempotent, and order does not matter.

        Each new attempt gets a row (one already stored is ignored); its delivery
        is created or updated: ``success`` once any attempt succeeded, else the
        status and the answer of the attempt that finished last. A delivery that
        becomes ``failed`` counts one more consecutive failure for its
        subscription, one that becomes ``success`` resets the count. Subscriptions
        with at least ``disable_after_failures`` (0: never) failing for at least
        ``disable_after_period`` seconds come back in :attr:`RecordResult.failing`.
        ``skips``: the batch's counts of events not sent (filtered, …), added in the same transaction.
        """
        batch: dict[uuid.UUID, AttemptRecord] = {}
        for record in attempts:
            held = batch.get(record.attempt_id)
            if held is None or (held.outcome == "pending" and record.outcome != "pending"):
                batch[record.attempt_id] = record  # the answer supersedes the record written ahead
        result = RecordResult(duplicates=len(attempts) - len(batch))
        if not batch:
            if skips:
                async with self._db.transaction() as session:
                    await add_skip_counts(await session.connection(), self._upsert_skips, skips)
            return result
        async with self._db.transaction() as session:
            # SQLAlchemy Core on the session's connection: no ORM objects, one
            # statement per step for the whole batch (executemany where it writes).
            connection = await session.connection()
            # Locks, always in the same order (subscriptions, then deliveries, by id),
            # so that concurrent recorders on PostgreSQL queue instead of deadlocking.
            # SQLite ignores FOR UPDATE: its transaction already holds the write lock.
            subscriptions = {
                row.id: Counters(row.id, row.status, row.consecutive_failures, row.first_failure_at)
                for row in await select_in(connection, _LOCK_SUBSCRIPTIONS, {a.subscription_id for a in batch.values()})
            }
            kept = [a for a in batch.values() if a.subscription_id in subscriptions]
            result.skipped = len(batch) - len(kept)
            if not kept:
                await add_skip_counts(connection, self._upsert_skips, skips)
                return result
            by_delivery: dict[uuid.UUID, list[AttemptRecord]] = defaultdict(list)
            for record in kept:
                by_delivery[record.delivery_id].append(record)

            stored: dict[uuid.UUID, dict[str, Any]] = {
                row.id: row._asdict() for row in await select_in(connection, _LOCK_DELIVERIES, by_delivery)
            }
            # (when, subscription id, new status) of deliveries that became success or failed.
            transitions: dict[uuid.UUID, tuple[datetime, uuid.UUID, DeliveryStatus] | None] = {}
            # A delivery not stored yet has none of its attempts stored either (they
            # reference it): its final row is computed here and inserted at once.
            fresh: dict[uuid.UUID, dict[str, Any]] = {}
            for delivery_id in sorted(by_delivery.keys() - stored.keys()):
                row = fresh[delivery_id] = new_delivery_values(delivery_id, by_delivery[delivery_id])
                transitions[delivery_id] = apply_attempts(row, by_delivery[delivery_id], set())
            if fresh and self._driver is not None:
                # The write lock is held since the read above: none of them is stored.
                await self._driver.deliveries.run(connection, fresh.values())
            elif fresh:
                created = set(await connection.scalars(self._insert_deliveries, list(fresh.values())))
                if raced := fresh.keys() - created:
                    # Created meanwhile by another writer: locked and updated like stored ones.
                    for delivery_id in raced:
                        del fresh[delivery_id], transitions[delivery_id]
                    stored.update(
                        (row.id, row._asdict()) for row in await select_in(connection, _LOCK_DELIVERIES, raced)
                    )
            # Attempts written ahead (pending) that this batch completes: their rows are updated.
            known: dict[uuid.UUID, str] = {}
            if stored:
                ids = {r.attempt_id for r in kept if r.delivery_id in stored}
                known = {row.attempt_id: row.outcome for row in await select_in(connection, _STORED_ATTEMPTS, ids)}
            completing = [r for r in kept if known.get(r.attempt_id) == "pending" and r.outcome != "pending"]
            completed = {r.attempt_id for r in completing}
            if completing:
                completions = [{**attempt_values(r), "b_id": r.attempt_id} for r in sorted(completing, key=_by_id)]
                if self._driver is not None:
                    await self._driver.complete.run(connection, completions)
                else:
                    await connection.execute(_COMPLETE_ATTEMPT, completions)
            fresh_attempts = [attempt_values(r) for r in kept if r.attempt_id not in known]
            if fresh_attempts and self._driver is not None:
                # No RETURNING: an id stored already (under another delivery) is read instead, and skipped.
                ids = {values["attempt_id"] for values in fresh_attempts}
                taken = {row.attempt_id for row in await select_in(connection, _STORED_ATTEMPTS, ids)}
                await self._driver.attempts.run(connection, (v for v in fresh_attempts if v["attempt_id"] not in taken))
                inserted = ids - taken
            elif fresh_attempts:
                inserted = set(await connection.scalars(self._insert_attempts, fresh_attempts))
            else:
                inserted = set()
            result.recorded = len(inserted) + len(completed)
            result.duplicates += len(kept) - result.recorded

            # UPDATEs grouped by the columns they set: one executemany per group.
            updates: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
            for delivery_id in fresh:
                records = by_delivery[delivery_id]
                if all(record.attempt_id in inserted for record in records):
                    continue
                # Only if a stored attempt names another delivery than its record does: redo the row.
                row = new_delivery_values(delivery_id, records)
                transitions[delivery_id] = apply_attempts(row, [r for r in records if r.attempt_id in inserted], set())
                add_update(updates, delivery_id, row)
            for delivery_id, row in stored.items():
                new = [r for r in by_delivery[delivery_id] if r.attempt_id in inserted or r.attempt_id in completed]
                if new:
                    transitions[delivery_id] = apply_attempts(row, new, completed)
                    add_update(updates, delivery_id, row)
            for keys, params in updates.items():
                params.sort(key=lambda p: p["b_id"])
                if self._driver is not None:
                    await self._driver.update_deliveries(keys).run(connection, params)
                else:
                    await connection.execute(_UPDATE_DELIVERY, params)

            failed_more = count_failures(
                subscriptions, [t for d in by_delivery if (t := transitions.get(d)) is not None]
            )
            counters = [
                {"b_id": c.id, "consecutive_failures": c.consecutive_failures, "first_failure_at": c.first_failure_at}
                for _, c in sorted(subscriptions.items())
                if c.changed()
            ]
            if counters:
                await connection.execute(_UPDATE_COUNTERS, counters)
            result.failing = over_threshold(
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
            # Last, whatever the batch held: every recorder takes its locks in the same order.
            await add_skip_counts(connection, self._upsert_skips, skips)
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
"""What :func:`apply_attempts` reads of the stored deliveries in ``ids``, locked."""


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


class _SqliteWrites:
    """The batch's bulk writes as the SQLite driver's executemany (see :mod:`._driver`)."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.deliveries = driver_insert(DELIVERIES, "id", dialect)
        self.attempts = driver_insert(ATTEMPTS, "attempt_id", dialect)
        self.complete = driver_update(_COMPLETE_ATTEMPT, ATTEMPTS, [c.key for c in ATTEMPTS.c], dialect)
        self._updates: dict[frozenset[str], DriverStatement] = {}

    def update_deliveries(self, keys: frozenset[str]) -> DriverStatement:
        """The UPDATE of deliveries setting ``keys`` (compiled on first use: a handful of sets occur)."""
        statement = self._updates.get(keys)
        if statement is None:
            statement = self._updates[keys] = driver_update(_UPDATE_DELIVERY, DELIVERIES, sorted(keys), self._dialect)
        return statement


_UPDATE_COUNTERS: Final = update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == bindparam("b_id"))
