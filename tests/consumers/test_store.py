"""The SQL storage layer against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, column, func, inspect, select, table, text

from consumers._messages import AttemptOutcome, AttemptRecord, Subscription, delivery_id_for
from consumers.log._database import Database, alembic_config
from consumers.log._models import ALEMBIC_VERSION_TABLE, AttemptRow, Base, DeliveryRow
from consumers.log._store import DeliveryStore, RecordResult, SubscriptionStore
from streams._errors import ConflictError, NotFoundError, TurbohooksError

from .conftest import sqlite_url

# Two days ago, to the microsecond: old enough for "failing for at least a day".
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=123456)
NO_DISABLE: dict[str, Any] = {"disable_after_failures": 0, "disable_after_period": 0.0}


def make_subscription(**overrides: Any) -> Subscription:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": f"sub-{uuid.uuid4().hex[:8]}",
        "url": "https://example.com/hook",
        "event_types": ["issue.*"],
        "secret": "whsec_c2VjcmV0",
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Subscription(**fields)


def make_attempt(
    sub: Subscription,
    event_id: uuid.UUID,
    attempt: int,
    outcome: AttemptOutcome,
    finished_at: datetime,
    **overrides: Any,
) -> AttemptRecord:
    fields: dict[str, Any] = {
        "attempt_id": uuid.uuid4(),
        "delivery_id": delivery_id_for(sub.id, event_id),
        "subscription_id": sub.id,
        "event_id": event_id,
        "event_type": "issue.created",
        "attempt": attempt,
        "outcome": outcome,
        "stream_seq": 42,
        "request_url": sub.url,
        "request_headers": {"webhook-id": str(delivery_id_for(sub.id, event_id))},
        "payload": msgspec.json.encode({"event_id": str(event_id), "data": {"title": "Bug", "n": [1, 2.5]}}),
        "response_code": {"success": 200, "retrying": 503, "failed": 500}[outcome],
        "response_headers": {"content-type": "text/plain"},
        "response_body": outcome,
        "error": None if outcome == "success" else f"HTTP {outcome}",
        "latency_ms": 10.0 * attempt,
        "started_at": finished_at - timedelta(milliseconds=10 * attempt),
        "finished_at": finished_at,
        "next_attempt_at": finished_at + timedelta(minutes=5) if outcome == "retrying" else None,
    }
    fields.update(overrides)
    return AttemptRecord(**fields)


def retries_then(sub: Subscription, event_id: uuid.UUID, last: AttemptOutcome, start: datetime) -> list[AttemptRecord]:
    """Three ``retrying`` attempts a minute apart, then one ending in ``last``."""
    outcomes: list[AttemptOutcome] = ["retrying", "retrying", "retrying", last]
    return [make_attempt(sub, event_id, n + 1, o, start + timedelta(minutes=n)) for n, o in enumerate(outcomes)]


def is_utc(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


# --- database and migrations ---------------------------------------------------


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"version_table": ALEMBIC_VERSION_TABLE, "compare_type": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_apply_on_an_empty_database_then_are_a_no_op(empty_database_url: str) -> None:
    # Two processes starting at once on an empty database: both end up at head.
    first, second = Database(empty_database_url), Database(empty_database_url)
    await asyncio.gather(first.__aenter__(), second.__aenter__())
    await asyncio.gather(first.__aexit__(None, None, None), second.__aexit__(None, None, None))

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    version_table = table(ALEMBIC_VERSION_TABLE, column("version_num"))
    for _ in range(2):  # re-entering re-applies nothing and breaks nothing
        async with Database(empty_database_url) as db, db.engine.connect() as connection:
            assert await connection.run_sync(_tables) >= {
                "webhook_subscriptions",
                "webhook_deliveries",
                "webhook_delivery_attempts",
                ALEMBIC_VERSION_TABLE,
            }
            versions = (await connection.execute(select(version_table.c.version_num))).all()
            assert versions == [(head,)]
            # The hand-written migration and the models describe the same schema.
            assert await connection.run_sync(_schema_differences) == []


async def test_sqlite_connections_have_wal_busy_timeout_and_foreign_keys(tmp_path: Any) -> None:
    path = tmp_path / "nested" / "folder" / "t.db"
    async with Database(f"sqlite+aiosqlite:///{path}") as db, db.engine.connect() as connection:
        assert path.exists()
        pragmas = {
            p: (await connection.exec_driver_sql(f"PRAGMA {p}")).scalar()
            for p in ("journal_mode", "busy_timeout", "foreign_keys")
        }
        assert pragmas == {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1}


async def test_ping_answers_and_fails_loudly_when_unreachable(db: Database) -> None:
    await db.ping()
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(TurbohooksError, match="does not answer"):
            await unreachable.ping(timeout=2.0)
    finally:
        await unreachable.engine.dispose()


# --- subscriptions ----------------------------------------------------------------


async def test_subscription_round_trips_every_field(db: Database) -> None:
    store = SubscriptionStore(db)
    plus_two = timezone(timedelta(hours=2))
    sub = make_subscription(
        event_types=["issue.created", "*.deleted"],
        integration="slack",
        integration_config={"channel": "#eng", "nested": {"list": [1, "two", None, True]}},
        headers={"X-Team": "core"},
        status="paused",
        disabled_reason="paused by alice",
        previous_secret="whsec_b2xk",
        previous_secret_expires_at=datetime(2030, 5, 6, 7, 8, 9, 654321, tzinfo=plus_two),
        filters={"priority": {"in": ["high", "urgent"]}},
        retry_schedule=[5.0, 300.0, 1800.5],
        max_in_flight=8,
        consecutive_failures=3,
        first_failure_at=T0 - timedelta(hours=1),
        updated_at=T0 + timedelta(seconds=1),
    )
    created = await store.create(sub)
    got = await store.get(sub.id)
    assert created == got == sub
    for value in (got.created_at, got.updated_at, got.first_failure_at, got.previous_secret_expires_at):
        assert is_utc(value)
    assert got.previous_secret_expires_at == datetime(2030, 5, 6, 5, 8, 9, 654321, tzinfo=UTC)
    assert got.active is False

    minimal = await store.create(make_subscription(created_at=T0 + timedelta(seconds=1)))
    assert minimal.filters is None and minimal.retry_schedule is None and minimal.max_in_flight is None
    assert minimal.integration == "webhook" and minimal.integration_config == {} and minimal.headers == {}
    assert await store.all_for_mirror() == [got, minimal]


async def test_duplicate_names_and_ids_conflict(db: Database) -> None:
    store = SubscriptionStore(db)
    sub = await store.create(make_subscription(name="billing"))
    with pytest.raises(ConflictError, match="'billing' already exists"):
        await store.create(make_subscription(name="billing"))
    with pytest.raises(ConflictError, match=f"subscription {sub.id} already exists"):
        await store.create(make_subscription(id=sub.id))
    other = await store.create(make_subscription(name="other"))
    with pytest.raises(ConflictError, match="'billing' already exists"):
        await store.update(msgspec.structs.replace(other, name="billing"))
    assert await store.count() == 2


async def test_concurrent_creates_of_one_name_conflict(db: Database) -> None:
    store = SubscriptionStore(db)
    results = await asyncio.gather(
        *(store.create(make_subscription(name="racy")) for _ in range(4)), return_exceptions=True
    )
    assert sum(isinstance(r, Subscription) for r in results) == 1
    assert sum(isinstance(r, ConflictError) and "'racy' already exists" in str(r) for r in results) == 3


async def test_missing_subscriptions_are_not_found(db: Database) -> None:
    store = SubscriptionStore(db)
    missing = uuid.uuid4()
    with pytest.raises(NotFoundError, match=f"^subscription {missing} not found$"):
        await store.get(missing)
    with pytest.raises(KeyError):
        await store.delete(missing)
    with pytest.raises(NotFoundError):
        await store.update(make_subscription(id=missing))
    assert await store.disable(missing, "gone") is None


async def test_update_writes_editable_fields_and_keeps_failure_counters(db: Database) -> None:
    store = SubscriptionStore(db)
    sub = await store.create(make_subscription(consecutive_failures=4, first_failure_at=T0))
    edited = msgspec.structs.replace(
        sub,
        name="renamed",
        url="https://example.org/new",
        event_types=["*"],
        headers={"A": "b"},
        max_in_flight=2,
        retry_schedule=[1.0],
        consecutive_failures=0,  # not the caller's to change
        first_failure_at=None,
    )
    updated = await store.update(edited)
    assert updated.name == "renamed" and updated.url == "https://example.org/new" and updated.event_types == ["*"]
    assert updated.headers == {"A": "b"} and updated.max_in_flight == 2 and updated.retry_schedule == [1.0]
    assert updated.consecutive_failures == 4 and updated.first_failure_at == T0
    assert updated.updated_at > sub.updated_at and updated.created_at == sub.created_at

    disabled = await store.disable(sub.id, "410 Gone")
    assert disabled is not None and disabled.status == "disabled" and disabled.disabled_reason == "410 Gone"
    assert await store.disable(sub.id, "again") is None
    reenabled = await store.update(msgspec.structs.replace(disabled, status="active"))
    assert reenabled.status == "active" and reenabled.active and reenabled.disabled_reason is None
    assert reenabled.consecutive_failures == 0 and reenabled.first_failure_at is None


async def test_list_and_count_subscriptions_by_status_and_integration(db: Database) -> None:
    store = SubscriptionStore(db)
    subs = [
        await store.create(
            make_subscription(
                name=f"s{n}",
                integration="slack" if n % 2 else "webhook",
                status="paused" if n % 3 == 0 else "active",
                created_at=T0 + timedelta(seconds=n),
            )
        )
        for n in range(7)
    ]
    assert [s.name for s in await store.list()] == [s.name for s in subs]
    assert [s.name for s in await store.list(limit=3, offset=2)] == ["s2", "s3", "s4"]
    assert [s.name for s in await store.list(status="paused")] == ["s0", "s3", "s6"]
    assert [s.name for s in await store.list(integration="slack", status="active")] == ["s1", "s5"]
    assert await store.count() == 7
    assert await store.count(status="active") == 4
    assert await store.count(integration="slack") == 3


async def test_due_probes_are_the_disabled_auto_recovering_ones_due_by_now(db: Database) -> None:
    store = SubscriptionStore(db)
    now = datetime.now(UTC)

    async def disabled(name: str, **fields: Any) -> Subscription:
        sub = await store.create(make_subscription(name=name, status="disabled", **fields))
        return sub

    due = await disabled("due", next_probe_at=now - timedelta(seconds=1), probe_attempts=2)
    unscheduled = await disabled("unscheduled")
    await disabled("later", next_probe_at=now + timedelta(minutes=1))
    await disabled("opted-out", auto_recover=False, next_probe_at=now - timedelta(seconds=1))
    await disabled("e-mail", integration="email", next_probe_at=now - timedelta(seconds=1))
    await store.create(make_subscription(name="active", next_probe_at=now - timedelta(seconds=1)))
    found = await store.due_probes(now, ["webhook", "slack"])
    assert sorted(s.name for s in found) == ["due", "unscheduled"]
    (again,) = [s for s in found if s.id == due.id]
    assert again.probe_attempts == 2 and again.next_probe_at == due.next_probe_at
    assert unscheduled.id in {s.id for s in found}


# --- recording attempts ------------------------------------------------------------


async def test_retries_then_success_make_one_successful_delivery(db: Database) -> None:
    sub = await SubscriptionStore(db).create(make_subscription())
    deliveries = DeliveryStore(db)
    event_id = uuid.uuid4()
    attempts = retries_then(sub, event_id, "success", T0)
    shuffled = random.sample(attempts, len(attempts))  # the order of a batch does not matter

    result = await deliveries.record(shuffled, **NO_DISABLE)
    assert result == RecordResult(recorded=4)

    delivery = await deliveries.get(delivery_id_for(sub.id, event_id))
    assert delivery.status == "success" and delivery.attempts == 4
    assert delivery.response_code == 200 and delivery.response_body == "success" and delivery.error_message is None
    assert delivery.delivered_at == delivery.last_attempt_at == T0 + timedelta(minutes=3)
    assert delivery.created_at == attempts[0].started_at and is_utc(delivery.created_at)
    assert delivery.next_attempt_at is None and delivery.latency_ms == 40.0 and delivery.stream_seq == 42
    assert delivery.event_id == event_id and delivery.event_type == "issue.created" and delivery.trigger == "live"
    assert msgspec.json.decode(delivery.payload) == msgspec.json.decode(attempts[0].payload)
    assert [a.attempt for a in delivery.attempt_log] == [1, 2, 3, 4]
    assert [a.outcome for a in delivery.attempt_log] == ["retrying", "retrying", "retrying", "success"]
    first = delivery.attempt_log[0]
    assert first.attempt_id == attempts[0].attempt_id and first.response_code == 503
    assert first.request_headers == attempts[0].request_headers and first.response_headers == {
        "content-type": "text/plain"
    }
    assert first.next_attempt_at == T0 + timedelta(minutes=5) and is_utc(first.started_at)


async def test_recording_the_same_batch_twice_changes_nothing(db: Database) -> None:
    subs = SubscriptionStore(db)
    sub = await subs.create(make_subscription())
    deliveries = DeliveryStore(db)
    batch = retries_then(sub, uuid.uuid4(), "failed", T0) + retries_then(sub, uuid.uuid4(), "success", T0)

    assert (await deliveries.record(batch, **NO_DISABLE)).recorded == 8
    before = ([await deliveries.get(d.id) for d in await deliveries.list()], await subs.get(sub.id))
    again = await deliveries.record(batch + batch[:2], **NO_DISABLE)
    assert again == RecordResult(recorded=0, duplicates=10)
    after = ([await deliveries.get(d.id) for d in await deliveries.list()], await subs.get(sub.id))
    assert after == before
    assert after[1].consecutive_failures == 0  # the failure came before the success


async def test_success_is_sticky_whatever_arrives_later(db: Database) -> None:
    sub = await SubscriptionStore(db).create(make_subscription())
    deliveries = DeliveryStore(db)
    event_id = uuid.uuid4()
    delivery_id = delivery_id_for(sub.id, event_id)
    await deliveries.record([make_attempt(sub, event_id, 2, "success", T0 + timedelta(minutes=1))], **NO_DISABLE)

    # An older retry, delivered late to the recorder: counted, status unchanged.
    await deliveries.record([make_attempt(sub, event_id, 1, "retrying", T0)], **NO_DISABLE)
    delivery = await deliveries.get(delivery_id)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("success", 2, 200)
    assert [a.attempt for a in delivery.attempt_log] == [1, 2]

    # A later replay that fails does not undo the delivery either.
    replay = make_attempt(sub, event_id, 1, "failed", T0 + timedelta(hours=1), trigger="replay")
    await deliveries.record([replay], **NO_DISABLE)
    delivery = await deliveries.get(delivery_id)
    assert (delivery.status, delivery.attempts, delivery.trigger) == ("success", 3, "replay")
    assert delivery.delivered_at == T0 + timedelta(minutes=1)
    assert (await SubscriptionStore(db).get(sub.id)).consecutive_failures == 0


async def test_failed_deliveries_count_up_to_the_disable_threshold(db: Database) -> None:
    subs = SubscriptionStore(db)
    sub = await subs.create(make_subscription())
    deliveries = DeliveryStore(db)
    thresholds: dict[str, Any] = {"disable_after_failures": 2, "disable_after_period": 3600.0}

    pending = await deliveries.record(retries_then(sub, uuid.uuid4(), "retrying", T0)[:3], **thresholds)
    assert pending.failing == [] and (await subs.get(sub.id)).consecutive_failures == 0

    first_failure = T0 + timedelta(minutes=10)
    first = await deliveries.record([make_attempt(sub, uuid.uuid4(), 1, "failed", first_failure)], **thresholds)
    assert first.failing == []
    stored = await subs.get(sub.id)
    assert stored.consecutive_failures == 1 and stored.first_failure_at == first_failure

    batch = [make_attempt(sub, uuid.uuid4(), 1, "failed", T0 + timedelta(minutes=20))]
    second = await deliveries.record(batch, **thresholds)
    assert [sub_id for sub_id, _ in second.failing] == [sub.id]
    assert "2 consecutive deliveries failed" in second.failing[0][1]
    assert second.to_disable() == dict(second.failing)
    stored = await subs.get(sub.id)
    assert stored.consecutive_failures == 2 and stored.first_failure_at == first_failure

    # Re-recording does not count the failure twice; a longer period is not reached yet.
    assert (await deliveries.record(batch, **thresholds)).failing == []
    recent = make_attempt(sub, uuid.uuid4(), 1, "failed", datetime.now(UTC))
    assert (await deliveries.record([recent], disable_after_failures=2, disable_after_period=86400 * 30)).failing == []
    assert (await subs.get(sub.id)).consecutive_failures == 3

    # One success resets the count.
    await deliveries.record([make_attempt(sub, uuid.uuid4(), 1, "success", datetime.now(UTC))], **thresholds)
    stored = await subs.get(sub.id)
    assert stored.consecutive_failures == 0 and stored.first_failure_at is None


async def test_gone_answers_ask_to_disable_the_subscription(db: Database) -> None:
    subs = SubscriptionStore(db)
    sub = await subs.create(make_subscription())
    deliveries = DeliveryStore(db)
    reason = "the receiver answered 410 Gone"
    gone = [
        make_attempt(sub, uuid.uuid4(), 1, "failed", T0, response_code=410, disable_subscription=reason),
        make_attempt(sub, uuid.uuid4(), 1, "failed", T0, response_code=410, disable_subscription=reason),
    ]
    result = await deliveries.record(gone, **NO_DISABLE)
    assert result.gone == [(sub.id, reason)] and result.to_disable() == {sub.id: reason}

    assert await subs.disable(sub.id, reason) is not None
    later = make_attempt(sub, uuid.uuid4(), 1, "failed", T0, disable_subscription=reason)
    assert (await deliveries.record([later], **NO_DISABLE)).gone == []  # disabled already


async def test_attempts_of_deleted_subscriptions_are_skipped(db: Database) -> None:
    sub = await SubscriptionStore(db).create(make_subscription())
    ghost = make_subscription()
    deliveries = DeliveryStore(db)
    batch = [make_attempt(sub, uuid.uuid4(), 1, "success", T0), make_attempt(ghost, uuid.uuid4(), 1, "success", T0)]
    assert await deliveries.record(batch, **NO_DISABLE) == RecordResult(recorded=1, skipped=1)
    assert await deliveries.count() == 1
    with pytest.raises(NotFoundError, match=r"^delivery .* not found$"):
        await deliveries.get(batch[1].delivery_id)


async def test_deleting_a_subscription_deletes_its_deliveries_and_attempts(db: Database) -> None:
    subs = SubscriptionStore(db)
    doomed, kept = await subs.create(make_subscription()), await subs.create(make_subscription())
    deliveries = DeliveryStore(db)
    await deliveries.record(
        retries_then(doomed, uuid.uuid4(), "success", T0) + retries_then(kept, uuid.uuid4(), "success", T0),
        **NO_DISABLE,
    )
    await subs.delete(doomed.id)
    with pytest.raises(NotFoundError):
        await subs.get(doomed.id)
    assert [d.subscription_id for d in await deliveries.list()] == [kept.id]
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AttemptRow)) == 4
        assert await session.scalar(select(func.count()).select_from(DeliveryRow)) == 1


async def test_odd_bodies_are_stored_safely(db: Database) -> None:
    sub = await SubscriptionStore(db).create(make_subscription())
    deliveries = DeliveryStore(db)
    form, nul = uuid.uuid4(), uuid.uuid4()
    await deliveries.record(
        [
            make_attempt(sub, form, 1, "success", T0, payload=b"a=1&b=%C3%A9", response_body="ok\x00ok"),
            make_attempt(sub, nul, 1, "success", T0, payload=b'{"t":"a\\u0000b"}', error="x\x00"),
        ],
        **NO_DISABLE,
    )
    form_delivery = await deliveries.get(delivery_id_for(sub.id, form))
    assert form_delivery.payload == b"a=1&b=%C3%A9" and form_delivery.response_body == "ok\ufffdok"
    nul_delivery = await deliveries.get(delivery_id_for(sub.id, nul))
    assert msgspec.json.decode(nul_delivery.payload) == {"t": "a\ufffdb"}
    # Naive datetimes (no offset on the wire) are taken as UTC.
    naive = make_attempt(sub, form, 2, "success", T0.replace(tzinfo=None) + timedelta(minutes=1))
    await deliveries.record([naive], **NO_DISABLE)
    assert (await deliveries.get(delivery_id_for(sub.id, form))).last_attempt_at == T0 + timedelta(minutes=1)


async def test_json_bodies_are_stored_as_sent_unless_they_are_not_utf8(db: Database) -> None:
    sub = await SubscriptionStore(db).create(make_subscription())
    deliveries = DeliveryStore(db)
    spaced, latin, broken = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await deliveries.record(
        [
            make_attempt(sub, spaced, 1, "success", T0, payload=b' {"a" : [1, 2.5, "\\u00e9"], "b": {}} '),
            # JSON syntax, but not UTF-8: kept as text, the bad byte replaced.
            make_attempt(sub, latin, 1, "success", T0, payload=b'{"name":"caf\xe9"}'),
            make_attempt(sub, broken, 1, "success", T0, payload=b'{"a": [1, 2'),
        ],
        **NO_DISABLE,
    )
    stored = await deliveries.get(delivery_id_for(sub.id, spaced))
    assert msgspec.json.decode(stored.payload) == {"a": [1, 2.5, "\u00e9"], "b": {}}
    assert (await deliveries.get(delivery_id_for(sub.id, latin))).payload == '{"name":"caf\ufffd"}'.encode()
    assert (await deliveries.get(delivery_id_for(sub.id, broken))).payload == b'{"a": [1, 2'


async def test_one_batch_updates_stored_deliveries_column_by_column(db: Database) -> None:
    sub = await SubscriptionStore(db).create(make_subscription())
    deliveries = DeliveryStore(db)
    newer, late, fresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await deliveries.record(
        [
            make_attempt(sub, newer, 1, "retrying", T0),
            make_attempt(sub, late, 2, "retrying", T0 + timedelta(minutes=5), stream_seq=7),
        ],
        **NO_DISABLE,
    )
    # One batch: a newer answer without a body nor a sequence, an older answer arriving
    # late, and a delivery seen for the first time.
    await deliveries.record(
        [
            make_attempt(sub, newer, 2, "failed", T0 + timedelta(minutes=1), payload=b"", stream_seq=None),
            make_attempt(sub, late, 1, "success", T0 + timedelta(minutes=2), response_body="late"),
            make_attempt(sub, fresh, 1, "retrying", T0 + timedelta(minutes=3), stream_seq=None, payload=b""),
        ],
        **NO_DISABLE,
    )
    updated = await deliveries.get(delivery_id_for(sub.id, newer))
    assert (updated.status, updated.attempts, updated.response_code, updated.stream_seq) == ("failed", 2, 500, 42)
    assert updated.payload != b"" and updated.last_attempt_at == T0 + timedelta(minutes=1)
    assert updated.next_attempt_at is None and updated.error_message == "HTTP failed"
    kept = await deliveries.get(delivery_id_for(sub.id, late))
    assert (kept.status, kept.attempts, kept.response_body, kept.stream_seq) == ("success", 2, "retrying", 7)
    assert kept.delivered_at == T0 + timedelta(minutes=2) and kept.last_attempt_at == T0 + timedelta(minutes=5)
    assert kept.next_attempt_at is None  # delivered: nothing more is due
    created = await deliveries.get(delivery_id_for(sub.id, fresh))
    assert (created.status, created.attempts, created.payload, created.stream_seq) == ("pending", 1, b"", None)
    assert created.next_attempt_at == T0 + timedelta(minutes=8)
    assert (await SubscriptionStore(db).get(sub.id)).consecutive_failures == 0  # the success came after the failure


# --- reading deliveries ------------------------------------------------------------


async def test_list_count_and_recover_deliveries_with_filters(db: Database) -> None:
    subs = SubscriptionStore(db)
    alpha, beta = await subs.create(make_subscription()), await subs.create(make_subscription())
    deliveries = DeliveryStore(db)
    # Delivery n is created at T0 + n minutes: alpha gets the even ones, beta the odd ones.
    outcomes: list[AttemptOutcome] = ["success", "failed", "retrying", "failed", "success", "failed"]
    batch = [
        make_attempt(
            alpha if n % 2 == 0 else beta,
            uuid.uuid4(),
            1,
            outcome,
            T0 + timedelta(minutes=n),
            event_type="issue.created" if n < 3 else "issue.deleted",
        )
        for n, outcome in enumerate(outcomes)
    ]
    await deliveries.record(batch, **NO_DISABLE)

    def ids(n: list[int]) -> list[uuid.UUID]:
        return [batch[i].delivery_id for i in n]

    assert [d.id for d in await deliveries.list()] == ids([5, 4, 3, 2, 1, 0])
    assert [d.id for d in await deliveries.list(limit=2, offset=1)] == ids([4, 3])
    assert [d.id for d in await deliveries.list(subscription_id=beta.id)] == ids([5, 3, 1])
    assert [d.id for d in await deliveries.list(status="failed")] == ids([5, 3, 1])
    assert [d.id for d in await deliveries.list(status="pending")] == ids([2])
    assert [d.id for d in await deliveries.list(event_type="issue.deleted", status="success")] == ids([4])
    window: dict[str, Any] = {"since": batch[1].started_at, "until": batch[4].started_at}
    assert [d.id for d in await deliveries.list(**window)] == ids([3, 2, 1])
    assert await deliveries.count(**window) == 3
    assert await deliveries.count() == 6
    assert await deliveries.count(subscription_id=alpha.id, status="success") == 2

    recover = await deliveries.failed_since(beta.id, batch[2].started_at)
    assert [d.id for d in recover] == ids([3, 5])  # oldest first
    assert all(d.status == "failed" and is_utc(d.created_at) for d in recover)


async def test_stats_over_a_window(db: Database) -> None:
    subs = SubscriptionStore(db)
    busy, quiet = await subs.create(make_subscription(name="busy")), await subs.create(make_subscription(name="quiet"))
    await subs.create(make_subscription(name="idle", status="paused"))
    deliveries = DeliveryStore(db)
    since = T0 + timedelta(hours=1)
    # Before the window: not counted.
    await deliveries.record([make_attempt(busy, uuid.uuid4(), 1, "failed", T0, latency_ms=10_000.0)], **NO_DISABLE)
    # In it: 100 attempts with latencies 1..100 ms, over 100 deliveries.
    batch = [
        make_attempt(
            busy if n < 70 else quiet,
            uuid.uuid4(),
            1,
            "success" if n < 80 else ("failed" if n < 95 else "retrying"),
            since + timedelta(seconds=n + 1),
            latency_ms=float(n + 1),
            event_type="issue.created" if n % 4 else "comment.added",
        )
        for n in range(100)
    ]
    await deliveries.record(batch, **NO_DISABLE)

    stats = await deliveries.stats(since)
    assert (stats.deliveries, stats.success, stats.failed, stats.pending) == (100, 80, 15, 5)
    assert (stats.success_rate, stats.failure_rate) == (0.8, 0.15)
    assert stats.latency_p50_ms == pytest.approx(50.5)
    assert stats.latency_p95_ms == pytest.approx(95.05)
    assert stats.latency_p99_ms == pytest.approx(99.01)
    assert [(a.name, a.deliveries, a.success, a.failed) for a in stats.most_active_subscriptions] == [
        ("busy", 70, 70, 0),
        ("quiet", 30, 10, 15),
    ]
    assert stats.most_active_subscriptions[0].subscription_id == busy.id
    assert [(e.event_type, e.deliveries) for e in stats.top_event_types] == [
        ("issue.created", 75),
        ("comment.added", 25),
    ]
    assert stats.active_subscriptions == 2

    empty = await deliveries.stats(datetime.now(UTC) + timedelta(days=1))
    assert empty.deliveries == 0 and empty.success_rate == 0.0 and empty.latency_p50_ms is None
    assert empty.most_active_subscriptions == [] and empty.active_subscriptions == 2


async def test_subscription_windows_and_retries_scheduled(db: Database) -> None:
    """Per subscription: attempts, success rate, percentiles, timeouts, 401/403s, dead, and retries waiting."""
    subs = SubscriptionStore(db)
    ok, bad = await subs.create(make_subscription(name="ok")), await subs.create(make_subscription(name="bad"))
    deliveries = DeliveryStore(db)
    since = T0 + timedelta(hours=1)
    await deliveries.record([make_attempt(bad, uuid.uuid4(), 1, "failed", T0)], **NO_DISABLE)  # before: not counted
    batch = [make_attempt(ok, uuid.uuid4(), 1, "success", since + timedelta(seconds=n + 1)) for n in range(4)]
    batch[0] = msgspec.structs.replace(batch[0], latency_ms=40.0)
    timeout, refused, retrying = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    batch += [
        make_attempt(
            bad, timeout, 1, "retrying", since + timedelta(seconds=1), response_code=None, error="timeout after 5.0s"
        ),
        make_attempt(
            bad, timeout, 2, "failed", since + timedelta(seconds=2), response_code=None, error="timeout after 5.0s"
        ),
        make_attempt(bad, refused, 1, "failed", since + timedelta(seconds=3), response_code=401),
        make_attempt(bad, retrying, 1, "retrying", since + timedelta(seconds=4), response_code=403),
    ]
    await deliveries.record(batch, **NO_DISABLE)

    windows = await deliveries.subscription_windows(since)
    good = windows[ok.id]
    assert (good.attempts, good.success, good.success_rate, good.timeouts, good.auth_failures, good.dead) == (
        4,
        4,
        1.0,
        0,
        0,
        0,
    )
    assert good.latency_p50_ms == pytest.approx(10.0) and good.latency_p99_ms == pytest.approx(39.1)
    failing = windows[bad.id]
    assert (failing.attempts, failing.success, failing.success_rate) == (4, 0, 0.0)
    assert (failing.timeouts, failing.auth_failures, failing.dead) == (2, 2, 2)  # the timed-out and the 401 one
    assert await deliveries.retries_scheduled() == {bad.id: 1}
    assert await deliveries.subscription_windows(datetime.now(UTC) + timedelta(days=1)) == {}


async def test_concurrent_recorders_agree(db: Database) -> None:
    subs = SubscriptionStore(db)
    first, second = await subs.create(make_subscription()), await subs.create(make_subscription())
    deliveries = DeliveryStore(db)
    batch = [
        a
        for n in range(10)
        for sub in (first, second)
        for a in retries_then(sub, uuid.uuid4(), "failed", T0 + timedelta(hours=n))
    ]
    # Two recorders handed overlapping batches at once (a redelivery racing the original).
    results = await asyncio.gather(
        deliveries.record(batch, **NO_DISABLE),
        deliveries.record(list(reversed(batch)), **NO_DISABLE),
        deliveries.record(batch[::3], **NO_DISABLE),
    )
    assert sum(r.recorded for r in results) == len(batch)
    assert {(d.status, d.attempts) for d in await deliveries.list(limit=100)} == {("failed", 4)}
    assert [(await subs.get(s.id)).consecutive_failures for s in (first, second)] == [10, 10]


async def _raw_rows(db: Database) -> list[list[tuple[Any, ...]]]:
    """Every delivery and attempt row as the driver stores it (text, numbers), in a fixed order."""
    async with db.session() as session:
        queries = ("SELECT * FROM webhook_deliveries ORDER BY id", "SELECT * FROM webhook_delivery_attempts ORDER BY 1")
        return [[tuple(row) for row in await session.execute(text(query))] for query in queries]


def _pending(record: AttemptRecord) -> AttemptRecord:
    """The record written ahead of ``record``'s request."""
    return msgspec.structs.replace(
        record,
        outcome="pending",
        payload=b"",
        response_code=None,
        response_headers={},
        response_body=None,
        error="outcome unknown",
        latency_ms=None,
        finished_at=record.started_at,
        next_attempt_at=None,
    )


async def test_sqlite_driver_writes_store_what_sqlalchemy_stores(tmp_path: Path) -> None:
    sub = make_subscription()
    retried, pending, form, moved = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = make_attempt(sub, retried, 1, "retrying", T0)
    answer = make_attempt(sub, retried, 2, "success", T0 + timedelta(minutes=2))
    written_ahead = _pending(answer)
    # An attempt id stored already under another delivery: ignored, and its record's delivery written alone.
    stray = make_attempt(sub, moved, 1, "failed", T0, attempt_id=first.attempt_id)
    batches = [
        [first, _pending(make_attempt(sub, pending, 1, "retrying", T0))],
        [written_ahead, make_attempt(sub, form, 1, "failed", T0.replace(tzinfo=None), payload=b"a=1")],
        # A whole second (no microseconds to write), in another zone than UTC.
        [
            answer,
            stray,
            make_attempt(
                sub,
                form,
                2,
                "success",
                (T0 + timedelta(seconds=1, microseconds=-T0.microsecond)).astimezone(timezone(timedelta(hours=2))),
            ),
        ],
    ]
    stored = []
    for driver in (True, False):
        async with Database(sqlite_url(tmp_path / str(driver))) as db:
            await SubscriptionStore(db).create(sub)
            deliveries = DeliveryStore(db)
            assert (deliveries._driver is not None) is True  # SQLite: the driver's executemany
            if not driver:
                deliveries._driver = None  # the SQLAlchemy statements (PostgreSQL's path)
            results = [await deliveries.record(batch, **NO_DISABLE) for batch in batches]
            assert [(r.recorded, r.duplicates) for r in results] == [(2, 0), (2, 0), (2, 1)]
            stored.append(await _raw_rows(db))
    assert stored[0] == stored[1]
    deliveries_rows, attempts_rows = stored[0]
    assert len(deliveries_rows) == 4 and len(attempts_rows) == 5
