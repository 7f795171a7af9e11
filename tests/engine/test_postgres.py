"""The whole delivery path with PostgreSQL as the database (DATABASE_URL=postgresql+asyncpg://…)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from consumers import Engine, delivery_id_for, open_engine
from streams import Settings
from tests.support import Receiver, running_engine, wait_for

from ..consumers.conftest import postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_engine(settings: Settings) -> AsyncIterator[Engine]:
    async with postgres_database() as url:
        pg_settings = msgspec.structs.replace(settings, database_url=url)
        async with open_engine(pg_settings, name="test-pg") as engine:
            yield engine
            for sub in await engine.subscriptions.list(limit=100):
                await engine.service.delete(sub.id)


async def test_delivery_recorded_in_postgres(pg_engine: Engine, receiver: Receiver, unique: str) -> None:
    assert pg_engine.db.dialect_name == "postgresql"
    async with running_engine(pg_engine) as run:
        path = f"/pg-{unique}"
        sub = await run.subscribe(name=f"pg-{unique}", url=receiver.endpoint(path, [500, 200]), event_types=["*"])
        ack = await pg_engine.publisher.emit(
            event_type="issue.created", entity_id=unique, data={"current": {"title": "ünïcode \u2603"}}
        )

        async def delivered() -> bool:
            try:
                detail = await pg_engine.deliveries.get(delivery_id_for(sub.id, ack.event_id))
            except KeyError:
                return False
            return detail.status == "success"

        await wait_for(delivered, what="the delivery in PostgreSQL")
        detail = await pg_engine.deliveries.get(delivery_id_for(sub.id, ack.event_id))
        assert detail.attempts == 2
        assert msgspec.json.decode(detail.payload)["data"]["current"]["title"] == "ünïcode \u2603"
        stats = await pg_engine.deliveries.stats(detail.created_at.replace(year=2000))
        assert stats.success >= 1 and stats.latency_p50_ms is not None
