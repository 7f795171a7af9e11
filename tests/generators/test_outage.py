"""The scheduler and the milestone processor keep going through a NATS outage."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from publishers import EventPublisher
from publishers._changes import emit_change
from publishers.processors import MilestoneProcessor, Scheduler
from streams import EmbeddedNats, Settings, connect_nats, provision

from .conftest import eventually, stored_events

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_both_resume_after_the_server_comes_back(tmp_path: Path) -> None:
    port = _free_port()
    store, config = tmp_path / "js", ROOT / "nats" / "test.conf"
    settings = Settings(
        nats_url=f"nats://127.0.0.1:{port}",
        data_dir=tmp_path / "data",
        stream_max_bytes=1 << 30,
        publish_timeout=0.5,
        publish_retry_horizon=10.0,
    )
    server = EmbeddedNats(store_dir=store, port=port, config=config)
    await server.start()
    nc = await connect_nats(settings)
    js = nc.jetstream()
    await provision(js, settings)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    stop = asyncio.Event()
    try:
        async with EventPublisher(settings, nc=nc) as publisher:
            tasks = [
                asyncio.create_task(Scheduler(publisher, reports=False, tick_interval=0.1).run(stop)),
                asyncio.create_task(MilestoneProcessor(publisher).run(stop)),
            ]
            await emit_change(publisher, "issue", "before", previous=None, current={"due_date": yesterday})
            await eventually(lambda: _has(js, settings, ("issue.overdue", "before")))

            await server.stop()
            server = EmbeddedNats(store_dir=store, port=port, config=config)
            await server.start()

            await emit_change(
                publisher, "issue", "after", previous=None, current={"due_date": yesterday, "milestone_id": "m-1"}
            )
            await emit_change(publisher, "issue", "after", previous={"status": "open"}, current={"status": "closed"})
            await eventually(lambda: _has(js, settings, ("milestone.completed", "m-1")), timeout=20)
            assert not any(t.done() for t in tasks), "neither process died with the outage"
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        stop.set()
        await nc.close()
        await server.stop()


async def _has(js: JetStreamContext, settings: Settings, wanted: tuple[str, str]) -> bool:
    events = await stored_events(js, settings, 1)
    return wanted in {(e.event_type, e.entity_id) for e in events}
