"""The delivery log never loses a record: database hiccups, undecodable batches, large events (issue 16)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, make_url, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from consumers import AttemptBatch, AttemptRecord, DeadLetter, Engine, RecordResult, delivery_id_for, open_engine
from consumers.log._views import ATTEMPTS, DELIVERIES
from consumers.subscriptions._consumer import ack_wait
from streams import (
    ATTEMPTS_STREAM,
    ATTEMPTS_SUBJECT_ROOT,
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_ROOT,
    RECORDER_CONSUMER,
    DatabaseUnavailableError,
    EmbeddedNats,
    Event,
    NotFoundError,
    Settings,
    build_event,
    decode_event,
    encode_event,
)
from tests.support import Receiver, running_engine, wait_for

from ..consumers.conftest import POSTGRES_ADMIN_URL, postgres_database


async def _rows(engine: Engine, sub_id: uuid.UUID) -> tuple[set[uuid.UUID], int]:
    """The delivery ids stored for ``sub_id``, and how many attempt rows they have."""
    async with engine.db.session() as session:
        ids = set((await session.scalars(select(DELIVERIES.c.id).where(DELIVERIES.c.subscription_id == sub_id))).all())
        attempts = await session.scalar(
            select(func.count())
            .select_from(ATTEMPTS)
            .join(DELIVERIES, DELIVERIES.c.id == ATTEMPTS.c.delivery_id)
            .where(DELIVERIES.c.subscription_id == sub_id)
        )
    return ids, int(attempts or 0)


def _hold_sqlite_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    """Another process's writer: ``BEGIN IMMEDIATE`` held for ``seconds`` (longer than the 5 s busy timeout)."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN IMMEDIATE")
        held.set()
        threading.Event().wait(seconds)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@pytest.mark.slow
async def test_a_write_lock_longer_than_the_busy_timeout_loses_no_record(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    assert engine.db.dialect_name == "sqlite"
    path = engine.settings.resolved_database_url().removeprefix("sqlite+aiosqlite:///")
    async with running_engine(engine) as run:
        route = f"/locked-{unique}"
        sub = await run.subscribe(name=f"locked-{unique}", url=receiver.endpoint(route), event_types=["issue.*"])
        wanted: set[uuid.UUID] = set()

        async def burst(n: int, tag: str) -> None:
            for i in range(n):
                ack = await engine.publisher.emit(event_type="issue.updated", entity_id=f"{unique}-{tag}-{i}")
                wanted.add(delivery_id_for(sub.id, ack.event_id))
                await asyncio.sleep(0.01)

        held = threading.Event()
        locker = asyncio.create_task(asyncio.to_thread(_hold_sqlite_write_lock, Path(path), 7.0, held))
        await asyncio.to_thread(held.wait, 5)
        await burst(100, "during")  # the recorder's write of these fails after busy_timeout (5 s)
        await locker
        await burst(100, "after")  # and these are written: their ack must not settle the failed batch

        async def all_logged() -> bool:
            ids, _ = await _rows(engine, sub.id)
            return wanted <= ids

        await wait_for(lambda: len(receiver.at(route)) >= 200, timeout=30, what="every delivery")
        await wait_for(all_logged, timeout=40, what="every delivery in the log after the lock")
        ids, attempts = await _rows(engine, sub.id)
        assert ids == wanted
        assert attempts == len(receiver.at(route))


async def test_the_recorder_survives_an_undecodable_batch_and_keeps_it(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    """A batch that does not decode is parked on the dead-letter stream with the reason; good ones go on."""
    async with running_engine(engine) as run:
        route = f"/garbage-{unique}"
        sub = await run.subscribe(name=f"garbage-{unique}", url=receiver.endpoint(route), event_types=["issue.*"])
        junk = b'{"batch_id": "not a uuid", "records": [' + unique.encode() + b"]}"
        await engine.js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.junk{unique}", junk)
        await engine.js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.junk{unique}", b"\xff\xfe" + unique.encode())
        ack = await engine.publisher.emit(event_type="issue.created", entity_id=unique)

        async def logged() -> bool:
            ids, _ = await _rows(engine, sub.id)
            return delivery_id_for(sub.id, ack.event_id) in ids

        await wait_for(logged, what="the good delivery in the log")
        assert not any(task.done() for task in run.tasks), "the recorder keeps running"
        parked = await _dead_letter_bodies(engine, f"{unique}")
        assert junk in parked and b"\xff\xfe" + unique.encode() in parked


async def test_a_batch_a_killed_recorder_fetched_is_not_settled_by_the_next_one(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    """A recorder killed between fetch and write leaves its batch unacknowledged: it must stay for the next one.

    With "all up to this one" acknowledgements the next recorder's ack settled it, interest retention
    deleted it, and its records never reached the log (the fault suite's kill -9 of the recorder: 36 of 1,000).
    """
    batch = AttemptBatch(batch_id=uuid.uuid4(), records=[])
    await engine.js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.dead{unique}", msgspec.json.encode(batch))
    dead = await engine.js.pull_subscribe_bind(durable=RECORDER_CONSUMER, stream=ATTEMPTS_STREAM)
    try:
        fetched = await dead.fetch(1, timeout=5)  # ... and the process dies here, acknowledging nothing
        seq = fetched[0].metadata.sequence.stream
        async with running_engine(engine) as run:
            sub = await run.subscribe(
                name=f"after-{unique}", url=receiver.endpoint(f"/after-{unique}"), event_types=["issue.*"]
            )
            ack = await engine.publisher.emit(event_type="issue.created", entity_id=unique)

            async def logged() -> bool:
                ids, _ = await _rows(engine, sub.id)
                return delivery_id_for(sub.id, ack.event_id) in ids

            await wait_for(logged, what="a later batch stored and acknowledged by the live recorder")
            kept = await engine.js.get_msg(ATTEMPTS_STREAM, seq)
            assert kept.data == fetched[0].data, "the dead recorder's batch is still there for the next one"
    finally:
        await dead.unsubscribe()


async def _dead_letter_bodies(engine: Engine, needle: str) -> list[bytes]:
    psub = await engine.js.subscribe(f"{DEAD_LETTER_SUBJECT_ROOT}.>", stream=DEAD_LETTER_STREAM, ordered_consumer=True)
    found: list[bytes] = []
    try:
        while True:
            try:
                msg = await psub.next_msg(timeout=1.0)
            except TimeoutError:
                break
            if needle.encode() in msg.data or needle in str(msg.headers):
                found.append(msg.data)
    finally:
        await psub.unsubscribe()
    return found


async def test_a_batch_the_database_keeps_refusing_is_parked_and_the_log_goes_on(
    engine: Engine, receiver: Receiver, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an outage but an error (a bug, a value the database refuses): retried, then isolated and parked."""
    store = engine.deliveries
    real = store.record
    poison: set[uuid.UUID] = set()

    async def refusing(attempts: Sequence[AttemptRecord], **kwargs: Any) -> RecordResult:
        if any(a.subscription_id in poison for a in attempts):
            raise ValueError(f"refused {unique}")
        return await real(attempts, **kwargs)

    monkeypatch.setattr(store, "record", refusing)
    async with running_engine(engine) as run:
        bad = await run.subscribe(name=f"bad-{unique}", url=receiver.endpoint(f"/bad-{unique}"), event_types=["tag.*"])
        good = await run.subscribe(
            name=f"good-{unique}", url=receiver.endpoint(f"/good-{unique}"), event_types=["issue.*"]
        )
        poison.add(bad.id)
        await engine.publisher.emit(event_type="tag.created", entity_id=unique)
        await wait_for(lambda: len(receiver.at(f"/bad-{unique}")) == 1, what="the refused delivery")
        await asyncio.sleep(0.2)
        ack = await engine.publisher.emit(event_type="issue.created", entity_id=unique)

        async def logged() -> bool:
            ids, _ = await _rows(engine, good.id)
            return delivery_id_for(good.id, ack.event_id) in ids

        await wait_for(logged, what="the good delivery in the log")
        assert not any(task.done() for task in run.tasks), "the recorder keeps running"
        assert run.recorder.parked >= 1
        assert await _dead_letter_bodies(engine, str(bad.id)), "the refused batch is kept on the dead-letter stream"


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("refuse", [False, True], ids=["backends-killed", "connections-refused"])
async def test_postgresql_connections_killed_mid_burst_lose_no_record(
    settings: Settings, receiver: Receiver, unique: str, refuse: bool
) -> None:
    """PostgreSQL going away under the recorder (its backends terminated, as a restart does): retried in place.

    ``connections-refused``: the database also refuses new connections for 2 s, as while PostgreSQL restarts;
    asyncpg raises the generic DBAPIError for that ("not currently accepting connections"), which the
    recorder took for a bad batch and parked (2,322 of 5,000 records missing from the log in the fault suite).
    """
    async with postgres_database() as url:
        pg_settings = msgspec.structs.replace(settings, database_url=url)
        async with open_engine(pg_settings, name="test-pg") as engine, running_engine(engine) as run:
            route = f"/pgkill-{unique}"
            sub = await run.subscribe(name=f"pgkill-{unique}", url=receiver.endpoint(route), event_types=["issue.*"])
            database = make_url(url).database
            admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            wanted: set[uuid.UUID] = set()
            try:
                for i in range(200):
                    ack = await engine.publisher.emit(event_type="issue.updated", entity_id=f"{unique}-{i}")
                    wanted.add(delivery_id_for(sub.id, ack.event_id))
                    if i % 20 == 10:
                        async with admin.connect() as connection:
                            if refuse and i == 110:
                                await connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
                            await connection.execute(
                                text(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                                ),
                                {"name": database},
                            )
                    if refuse and i == 150:
                        await asyncio.sleep(1.0)
                        async with admin.connect() as connection:
                            await connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
                    await asyncio.sleep(0.01)
            finally:
                await admin.dispose()

            async def all_logged() -> bool:
                try:
                    ids, _ = await _rows(engine, sub.id)
                except DatabaseUnavailableError:
                    return False
                return wanted <= ids

            await wait_for(lambda: len(receiver.at(route)) >= 200, timeout=30, what="every delivery")
            await wait_for(all_logged, timeout=40, what="every delivery in the log")
            ids, attempts = await _rows(engine, sub.id)
            assert ids == wanted
            assert attempts == len(receiver.at(route))
            assert run.recorder.parked == 0
            for sub_ in await engine.subscriptions.list(limit=100):
                await engine.service.delete(sub_.id)


SMALL_PAYLOAD = 64 * 1024


@pytest.fixture
async def small_engine(tmp_path: Path, settings: Settings) -> AsyncIterator[Engine]:
    """An engine on its own nats-server whose max_payload is 64 KiB."""
    config = tmp_path / "small.conf"
    config.write_text("jetstream {\n  sync_interval: always\n}\nmax_payload: 64KB\n")
    async with EmbeddedNats(store_dir=tmp_path / "js", config=config) as server:
        small = msgspec.structs.replace(settings, nats_url=server.url)
        async with open_engine(small, name="test-small") as engine:
            assert engine.nc.max_payload == SMALL_PAYLOAD
            yield engine


def _large_event(entity_id: str) -> Event:
    """An event whose envelope is a little under the server's 64 KiB, so its record (base64) is over it."""
    blob = "x" * (SMALL_PAYLOAD - 6144)
    event = build_event(event_type="issue.updated", entity_id=entity_id, data={"current": {"blob": blob}})
    assert SMALL_PAYLOAD - 8192 < len(encode_event(event)) < SMALL_PAYLOAD - 1024
    return event


@pytest.mark.slow
async def test_an_event_near_max_payload_is_delivered_once_and_logged_once(
    small_engine: Engine, receiver: Receiver, unique: str
) -> None:
    engine = small_engine
    async with running_engine(engine) as run:
        route = f"/large-{unique}"
        sub = await run.subscribe(name=f"large-{unique}", url=receiver.endpoint(route), event_types=["issue.*"])
        before = [build_event(event_type="issue.created", entity_id=f"{unique}-a{i}") for i in range(20)]
        after = [build_event(event_type="issue.created", entity_id=f"{unique}-b{i}") for i in range(20)]
        large = _large_event(unique)
        acks = await engine.publisher.emit_many([*before, large, *after])
        wanted = {delivery_id_for(sub.id, a.event_id) for a in acks}

        async def all_logged() -> bool:
            ids, _ = await _rows(engine, sub.id)
            return wanted <= ids

        await wait_for(all_logged, timeout=20, what="every delivery in the log, the large one too")
        # Longer than ack_wait: an event whose record was never stored would come again by now.
        await asyncio.sleep(ack_wait(engine.settings) + 1)
        counts = Counter(r.event_id for r in receiver.at(route))
        assert counts == Counter({str(a.event_id): 1 for a in acks}), "each delivered once, the neighbours too"
        ids, attempts = await _rows(engine, sub.id)
        assert ids == wanted and attempts == len(acks)
        detail = await engine.deliveries.get(delivery_id_for(sub.id, large.event_id))
        assert detail.status == "success" and detail.attempts == 1
        stored = msgspec.json.decode(detail.payload)
        assert stored["turbohooks_omitted"] == "request body"
        assert stored["bytes"] == len(encode_event(large)) and stored["stream_seq"] is not None


async def test_an_event_near_max_payload_that_fails_for_good_is_dead_lettered(
    small_engine: Engine, receiver: Receiver, unique: str
) -> None:
    engine = small_engine
    async with running_engine(engine) as run:
        route = f"/large-dead-{unique}"
        sub = await run.subscribe(
            name=f"large-dead-{unique}", url=receiver.endpoint(route, [400]), event_types=["issue.*"]
        )
        large = _large_event(unique)
        await engine.publisher.emit_many([large])
        delivery_id = delivery_id_for(sub.id, large.event_id)

        async def failed() -> bool:
            try:
                return (await engine.deliveries.get(delivery_id)).status == "failed"
            except KeyError:
                return False

        await wait_for(failed, timeout=20, what="the large delivery to be failed in the log")
        letters = await _dead_letter_bodies(engine, str(delivery_id))
        assert len(letters) == 1
        letter = msgspec.json.decode(letters[0], type=DeadLetter)
        assert decode_event(bytes(letter.event)).event_id == large.event_id
        await asyncio.sleep(ack_wait(engine.settings) + 1)
        assert len(receiver.at(route)) == 1


async def test_an_answer_arriving_soon_after_its_pending_record_shares_its_write(
    engine: Engine, receiver: Receiver, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder waits a moment for more batches: a pending record and its answer soon after are one write."""
    # A wider wait than the shipped 50 ms, and a gap of 100 ms: publishes under load take tens of ms.
    monkeypatch.setattr("consumers.log._recorder._LINGER", 0.6)
    store = engine.deliveries
    real = store.record
    writes: list[list[AttemptRecord]] = []

    async def recording(attempts: Sequence[AttemptRecord], **kwargs: Any) -> RecordResult:
        writes.append(list(attempts))
        return await real(attempts, **kwargs)

    monkeypatch.setattr(store, "record", recording)
    async with running_engine(engine) as run:
        sub = await run.subscribe(
            name=f"pair-{unique}", url=receiver.endpoint(f"/pair-{unique}"), event_types=["issue.*"]
        )
        event_id = uuid.uuid4()
        started = datetime.now(UTC)
        pending = AttemptRecord(
            attempt_id=uuid.uuid4(),
            delivery_id=delivery_id_for(sub.id, event_id),
            subscription_id=sub.id,
            event_id=event_id,
            event_type="issue.created",
            attempt=1,
            outcome="pending",
            started_at=started,
            finished_at=started,
        )
        answer = msgspec.structs.replace(pending, outcome="success", response_code=200, finished_at=datetime.now(UTC))
        for record in (pending, answer):
            batch = AttemptBatch(batch_id=uuid.uuid4(), records=[record])
            await engine.js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.{sub.id.hex}", msgspec.json.encode(batch))
            await asyncio.sleep(0.1)

        async def logged() -> bool:
            try:
                return (await store.get(pending.delivery_id)).status == "success"
            except NotFoundError:
                return False

        await wait_for(logged, what="the delivery in the log")
        mine = [[r.outcome for r in w if r.attempt_id == pending.attempt_id] for w in writes]
        assert [outcomes for outcomes in mine if outcomes] == [["pending", "success"]]
