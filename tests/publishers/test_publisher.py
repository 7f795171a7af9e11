"""EventPublisher against a real nats-server: emit, batch, dedupe, refusals, outbox."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from publishers import EventPublisher
from streams import (
    EVENT_CATALOG,
    EmbeddedNats,
    EventValidationError,
    Settings,
    build_event,
    connect_nats,
    decode_event,
    provision,
)

ROOT = Path(__file__).resolve().parents[2]


async def _stream_events(js: JetStreamContext, settings: Settings, entity_id: str) -> list[tuple[int, bytes]]:
    """Every stored event of ``entity_id``, with its sequence, in stream order."""
    info = await js.stream_info(settings.stream_name)
    found: list[tuple[int, bytes]] = []
    if info.state.messages == 0:
        return found
    sub = await js.subscribe("turbo.>", stream=settings.stream_name, ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            try:
                mine = decode_event(msg.data).entity_id == entity_id
            except EventValidationError:  # another test's poison message in the session's shared stream
                mine = False
            if mine:
                found.append((msg.metadata.sequence.stream, msg.data))
            if msg.metadata.num_pending == 0:
                return found
    finally:
        await sub.unsubscribe()


async def test_emit_returns_id_and_sequence(js: JetStreamContext, settings: Settings, entity_id: str) -> None:
    async with EventPublisher(settings) as publisher:
        ack = await publisher.emit(
            event_type="comment.created",
            entity_type="comment",
            entity_id=entity_id,
            data={"current": {"content": "hello"}},
            context={"issue_id": "i-1"},
            actor={"type": "user", "name": "ada@example.com"},
        )
    assert ack.stream == settings.stream_name and ack.seq > 0 and not ack.duplicate
    msg = await js.get_msg(settings.stream_name, ack.seq)
    assert msg.subject == "turbo.comment.created"
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == str(ack.event_id)
    event = decode_event(msg.data or b"")
    assert event.event_id == ack.event_id
    assert event.data.current == {"content": "hello"}
    assert event.context.issue_id == "i-1"


async def test_every_catalog_type_publishes_and_decodes_equal(
    js: JetStreamContext, settings: Settings, entity_id: str
) -> None:
    events = [
        build_event(event_type=t, entity_id=entity_id, data={"current": {"n": i}}) for i, t in enumerate(EVENT_CATALOG)
    ]
    async with EventPublisher(settings) as publisher:
        acks = await publisher.emit_many(events)
    assert [a.event_id for a in acks] == [e.event_id for e in events]
    assert [a.seq for a in acks] == sorted(a.seq for a in acks), "pipelined publishes keep their order"
    for event, ack in zip(events, acks, strict=True):
        msg = await js.get_msg(settings.stream_name, ack.seq)
        assert msg.subject == f"turbo.{event.event_type}"
        assert decode_event(msg.data or b"") == event


async def test_republished_event_id_is_stored_once(js: JetStreamContext, settings: Settings, entity_id: str) -> None:
    event_id = uuid.uuid4()
    async with EventPublisher(settings) as publisher:
        first = await publisher.emit(event_type="issue.created", entity_id=entity_id, event_id=event_id)
        second = await publisher.emit(event_type="issue.created", entity_id=entity_id, event_id=event_id)
        third = await publisher.emit_many(
            [build_event(event_type="issue.created", entity_id=entity_id, event_id=event_id)]
        )
    assert not first.duplicate
    assert second.duplicate and second.seq == first.seq
    assert third[0].duplicate and third[0].seq == first.seq
    assert [seq for seq, _ in await _stream_events(js, settings, entity_id)] == [first.seq]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_type": "issue.exploded", "entity_id": "E"}, "event_type"),
        ({"event_type": "issue.created", "entity_id": ""}, "entity_id"),
        ({"event_type": "issue.created", "entity_id": "E", "data": ["not", "an", "object"]}, "data"),
        ({"event_type": "issue.created", "entity_id": "E", "data": {"current": "text"}}, "data.current"),
    ],
)
async def test_refused_input_publishes_nothing(
    js: JetStreamContext, settings: Settings, kwargs: dict[str, object], field: str
) -> None:
    before = (await js.stream_info(settings.stream_name)).state.last_seq
    async with EventPublisher(settings) as publisher:
        with pytest.raises(EventValidationError) as awaited:
            await publisher.emit(**kwargs)  # type: ignore[arg-type]
        with pytest.raises(EventValidationError) as background:
            publisher.emit_background(**kwargs)  # type: ignore[arg-type]
        assert publisher.outbox_pending == 0
    assert awaited.value.field == background.value.field == field
    assert (await js.stream_info(settings.stream_name)).state.last_seq == before


async def test_background_path_publishes_in_order(js: JetStreamContext, settings: Settings, entity_id: str) -> None:
    async with EventPublisher(settings) as publisher:
        ids = [
            publisher.emit_background(event_type="issue.updated", entity_id=entity_id, data={"current": {"n": n}})
            for n in range(50)
        ]
        assert await publisher.flush(10)
        assert publisher.outbox_pending == 0
    stored = [decode_event(data) for _, data in await _stream_events(js, settings, entity_id)]
    assert [e.event_id for e in stored] == ids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_background_events_survive_a_nats_outage(tmp_path: Path) -> None:
    """Events emitted while the server is down all arrive, in order, once it is back."""
    port = _free_port()
    store = tmp_path / "js"
    config = ROOT / "nats" / "test.conf"
    settings = Settings(
        nats_url=f"nats://127.0.0.1:{port}",
        data_dir=tmp_path / "data",
        stream_max_bytes=1 << 30,
        publish_timeout=0.5,
    )
    server = EmbeddedNats(store_dir=store, port=port, config=config)
    await server.start()
    nc = await connect_nats(settings)
    await provision(nc.jetstream(), settings)
    try:
        async with EventPublisher(settings, nc=nc) as publisher:
            first = publisher.emit_background(event_type="project.created", entity_id="p-0")
            assert await publisher.flush(5)

            await server.stop()
            ids = [
                publisher.emit_background(event_type="issue.created", entity_id=f"i-{n}", data={"current": {"n": n}})
                for n in range(40)
            ]
            assert publisher.outbox_pending == 40
            assert not await publisher.flush(1.0), "nothing can be acknowledged while the server is down"

            server = EmbeddedNats(store_dir=store, port=port, config=config)
            await server.start()
            assert await publisher.flush(30), f"{publisher.outbox_pending} events still in the outbox"

        js = nc.jetstream()
        info = await js.stream_info(settings.stream_name)
        stored = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            stored.append(decode_event((await js.get_msg(settings.stream_name, seq)).data or b"").event_id)
        assert stored == [first, *ids], "every event once, in the order emitted"
    finally:
        await nc.close()
        await server.stop()


async def test_outbox_keeps_events_across_restarts(settings: Settings, js: JetStreamContext, entity_id: str) -> None:
    """An event accepted by one publisher and not yet sent is sent by the next one."""
    from publishers import Outbox

    event = build_event(event_type="tag.created", entity_id=entity_id)
    outbox = Outbox(settings.data_dir / "outbox-restart.sqlite3")
    from streams import encode_event

    outbox.put(str(event.event_id), event.subject, encode_event(event))
    outbox.close()
    async with EventPublisher(settings, name="restart") as publisher:
        assert await publisher.flush(10)
    stored = await _stream_events(js, settings, entity_id)
    assert [decode_event(data).event_id for _, data in stored] == [event.event_id]


async def test_a_reopened_publisher_flushes_its_outbox(
    js: JetStreamContext, settings: Settings, entity_id: str
) -> None:
    """Closed and opened again, the same publisher reconnects and sends what its outbox holds."""
    publisher = EventPublisher(settings, name="reopened")
    async with publisher:
        first = publisher.emit_background(event_type="tag.created", entity_id=entity_id)
        assert await publisher.flush(10)
    async with publisher:
        second = publisher.emit_background(event_type="tag.applied", entity_id=entity_id)
        assert await publisher.flush(10), f"{publisher.outbox_pending} events still in the outbox"
        assert (await publisher.emit(event_type="tag.removed", entity_id=entity_id)).seq > 0
    stored = [decode_event(data).event_id for _, data in await _stream_events(js, settings, entity_id)]
    assert stored[:2] == [first, second]
