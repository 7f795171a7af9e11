"""Deliveries resume within 2 s of nats-server's return: pull requests are asked again on reconnect."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from consumers import open_engine
from streams import EmbeddedNats, Settings, build_event, connect_nats, encode_event
from tests.support import Receiver, running_engine, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_deliveries_resume_within_2s_of_the_servers_return(
    tmp_path: Path, receiver: Receiver, unique: str
) -> None:
    port = _free_port()
    store, config = tmp_path / "js", ROOT / "nats" / "test.conf"
    settings = Settings(
        nats_url=f"nats://127.0.0.1:{port}",
        data_dir=tmp_path / "data",
        stream_max_bytes=1 << 30,
        publish_timeout=2.0,
        publish_retry_horizon=5.0,
        webhook_timeout=5.0,
        webhook_allow_http=True,
        webhook_allowed_hosts=("127.0.0.1", "localhost"),
    )
    server = EmbeddedNats(store_dir=store, port=port, config=config)
    await server.start()
    try:
        async with open_engine(settings, name="test") as engine, running_engine(engine) as running:
            path = f"/resume-{unique}"
            await running.subscribe(name=f"resume-{unique}", url=receiver.endpoint(path), event_types=["tag.*"])
            before = build_event(event_type="tag.created", entity_id=unique)
            await engine.js.publish(before.subject, encode_event(before))
            await wait_for(lambda: len(receiver.at(path)) == 1, what="the delivery before the restart")

            await server.stop()
            server = EmbeddedNats(store_dir=store, port=port, config=config)
            await server.start()
            back = time.monotonic()
            nc = await connect_nats(settings, name="test-publisher")
            try:
                after = build_event(event_type="tag.created", entity_id=unique)
                await nc.jetstream(timeout=5).publish(after.subject, encode_event(after))
            finally:
                await nc.close()
            await wait_for(lambda: len(receiver.at(path)) == 2, timeout=30, what="the delivery after the restart")
            resumed = receiver.at(path)[1].at - back
            print(f"deliveries resumed {resumed:.2f}s after the server's return")
            assert receiver.at(path)[1].event_id == str(after.event_id)
            assert resumed < 2.0, f"deliveries resumed {resumed:.1f}s after the server's return"
    finally:
        await server.stop()
