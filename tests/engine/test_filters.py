"""Filters and redaction end to end: real nats-server, real receiver, SQLite and PostgreSQL.

A filtered event is acknowledged without a request and without a delivery-log
row, and counted in the stats; a redacted value reaches neither the receiver
nor the delivery log's SQL row.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from sqlalchemy import text

from consumers import Engine, delivery_id_for, open_engine
from consumers.log import DeliveryStats
from streams import Settings
from tests.support import Receiver, running_engine, settled, wait_for

from ..consumers.conftest import postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend_engine(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Engine]:
    """The engine on SQLite (the data dir's file) or on a fresh PostgreSQL database."""
    database: contextlib.AbstractAsyncContextManager[str | None] = (
        postgres_database() if request.param == "postgres" else contextlib.nullcontext(None)
    )
    async with database as url:
        configured = msgspec.structs.replace(settings, database_url=url, redact_fields=("internal_note",))
        async with open_engine(configured, name="test-filters") as engine:
            yield engine
            for sub in await engine.subscriptions.list(limit=100):
                await engine.service.delete(sub.id)


async def test_only_high_priority_events_are_delivered_and_the_rest_counted_as_filtered(
    backend_engine: Engine, receiver: Receiver, unique: str
) -> None:
    engine = backend_engine
    since = datetime.now(UTC) - timedelta(minutes=1)
    async with running_engine(engine) as run:
        path = f"/high-{unique}"
        sub = await run.subscribe(
            name=f"high-{unique}",
            url=receiver.endpoint(path),
            event_types=["issue.*"],
            filters={"data.current.priority": "high"},
            max_in_flight=1,  # in stream order: once the last event arrives, every earlier one was handled
        )
        priorities = ["low", "high", "medium", "low", None, "high", "low", "high"]
        acks = []
        for priority in priorities:
            current = {"title": "t"} if priority is None else {"title": "t", "priority": priority}
            acks.append(
                await engine.publisher.emit(event_type="issue.updated", entity_id=unique, data={"current": current})
            )
        wanted = [str(ack.event_id) for ack, p in zip(acks, priorities, strict=True) if p == "high"]
        await wait_for(lambda: len(receiver.at(path)) >= len(wanted), what="the high-priority deliveries")
        assert [r.event_id for r in receiver.at(path)] == wanted
        filtered = [ack.event_id for ack, p in zip(acks, priorities, strict=True) if p != "high"]

        seen: list[DeliveryStats] = []

        async def counted() -> bool:
            seen[:] = [await engine.deliveries.stats(since)]
            mine = [s for s in seen[0].skips_by_subscription if s.subscription_id == sub.id]
            return bool(mine) and mine[0].filtered >= len(filtered)

        await wait_for(counted, what="the filtered events counted")
        stats = seen[0]
        (mine,) = [s for s in stats.skips_by_subscription if s.subscription_id == sub.id]
        assert (mine.filtered, mine.throttled, mine.loop_stopped, mine.name) == (len(filtered), 0, 0, sub.name)
        assert stats.filtered >= len(filtered)
        # The subscription's health windows (the API's health, `top`) count them as well.
        window = (await engine.deliveries.subscription_windows(since))[sub.id]
        assert (window.filtered, window.throttled, window.loop_stopped) == (len(filtered), 0, 0)
        for event_id in wanted:
            await settled(run, sub.id, uuid.UUID(event_id), status="success")
        for event_id in filtered:
            with pytest.raises(KeyError):
                await engine.deliveries.get(delivery_id_for(sub.id, event_id))
        assert receiver.at(path)[-1].event["data"]["current"]["priority"] == "high"  # type: ignore[index]
        # The worker's metrics count them too, per subscription (its scrape's text, as Prometheus reads it).
        scrape = run.workers[0].metrics.render().decode()
        assert (
            f'turbohooks_subscription_deliveries_total{{outcome="filtered",process="worker",subscription_id="{sub.id}"}}'
            f" {float(len(filtered))}"
        ) in scrape


async def test_redacted_at_depth_in_the_body_and_in_the_log(
    backend_engine: Engine, receiver: Receiver, unique: str
) -> None:
    engine = backend_engine
    async with running_engine(engine) as run:
        path = f"/redact-{unique}"
        sub = await run.subscribe(
            name=f"redact-{unique}",
            url=receiver.endpoint(path),
            event_types=["issue.*"],
            redact_fields=["data.current.billing.card_number"],
        )
        data = {
            "current": {
                "title": "kept-title",
                "integration": {"settings": [{"api_key": "sk-live-9f3a", "region": "eu"}]},
                "billing": {"card_number": "4111-1111-1111-1111", "plan": "team"},
                "internal_note": "note-from-settings-list",  # TURBOHOOKS_REDACT_FIELDS
            },
            "previous": {"Password": "hunter2-old"},
        }
        ack = await engine.publisher.emit(event_type="issue.updated", entity_id=unique, data=data)
        await wait_for(lambda: len(receiver.at(path)) == 1, what="the delivery")
        body = receiver.at(path)[0].body
        current = msgspec.json.decode(body)["data"]["current"]
        assert current["title"] == "kept-title" and current["billing"]["plan"] == "team"
        assert current["integration"]["settings"][0] == {"api_key": "[redacted]", "region": "eu"}
        assert current["billing"]["card_number"] == "[redacted]"
        assert current["internal_note"] == "[redacted]"
        secrets = [b"sk-live-9f3a", b"4111-1111-1111-1111", b"note-from-settings-list", b"hunter2-old"]
        assert not [s for s in secrets if s in body]

        delivery_id = delivery_id_for(sub.id, ack.event_id)
        await settled(run, sub.id, ack.event_id, status="success")
        postgres = engine.db.dialect_name == "postgresql"
        async with engine.db.session() as session:
            stored = (
                await session.execute(
                    text("SELECT CAST(payload AS TEXT) FROM webhook_deliveries WHERE id = :id"),
                    {"id": delivery_id if postgres else delivery_id.hex},
                )
            ).scalar_one()
        assert "[redacted]" in stored and "kept-title" in stored
        assert not [s for s in secrets if s.decode() in stored], stored
