"""Stream provisioning against a real nats-server."""

from __future__ import annotations

import uuid
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from streams import (
    ATTEMPTS_STREAM,
    ATTEMPTS_SUBJECT_ROOT,
    RECORDER_CONSUMER,
    EmbeddedNats,
    Settings,
    connect_nats,
    ensure_stream,
    events_stream_config,
    provision,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_provision_is_idempotent_and_keeps_data(js: JetStreamContext, settings: Settings) -> None:
    name = f"T_{uuid.uuid4().hex[:8]}"
    config = events_stream_config(Settings(stream_name=name, stream_max_age=3600, stream_max_bytes=1 << 20))
    config.subjects = [f"prov.{name}.>"]
    await ensure_stream(js, config)
    await js.publish(f"prov.{name}.x", b"kept")
    again = await ensure_stream(js, config)
    assert again.state.messages == 1

    config.max_age = 7200
    updated = await ensure_stream(js, config)
    assert updated.config.max_age == 7200
    assert updated.state.messages == 1, "an update never drops data"
    await js.delete_stream(name)


async def test_events_stream_settings(js: JetStreamContext, settings: Settings) -> None:
    infos = await provision(js, settings)
    events = infos[0]
    assert events.config.subjects == ["turbo.>"]
    assert events.config.storage == StorageType.FILE
    assert events.config.duplicate_window == settings.duplicate_window
    assert events.config.duplicate_window > settings.publish_retry_horizon
    assert events.config.num_replicas == 1
    assert all(not s.startswith("turbo.") for info in infos[1:] for s in info.config.subjects or [])


async def test_attempts_are_kept_for_the_recorder_until_it_acknowledges(
    js: JetStreamContext, settings: Settings
) -> None:
    await provision(js, settings)
    attempts = await js.stream_info(ATTEMPTS_STREAM)
    # Interest: removed once recorded, instead of piling up for max_age.
    assert attempts.config.retention == RetentionPolicy.INTEREST
    # The recorder's consumer exists as soon as the stream does, so a batch
    # published before any recorder started is kept for it.
    recorder = await js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)
    assert recorder.config.ack_policy == AckPolicy.ALL
    assert recorder.config.filter_subject == f"{ATTEMPTS_SUBJECT_ROOT}.>"
    await provision(js, settings)  # idempotent, consumer included


async def test_an_older_attempts_stream_is_converted_in_place_keeping_its_batches(tmp_path: Path) -> None:
    """Stores made before interest retention (limits, 7 days) upgrade on provision, unrecorded batches kept."""
    async with EmbeddedNats(store_dir=tmp_path / "js", config=ROOT / "nats" / "test.conf") as server:
        settings = Settings(nats_url=server.url, data_dir=tmp_path / "data", stream_max_bytes=64 << 20)
        nc = await connect_nats(settings)
        try:
            js = nc.jetstream()
            subjects = [f"{ATTEMPTS_SUBJECT_ROOT}.>"]
            await js.add_stream(
                StreamConfig(name=ATTEMPTS_STREAM, subjects=subjects, retention=RetentionPolicy.LIMITS, max_age=604800)
            )
            await js.add_consumer(
                ATTEMPTS_STREAM,
                ConsumerConfig(durable_name=RECORDER_CONSUMER, filter_subject=subjects[0], ack_policy=AckPolicy.ALL),
            )
            await js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.old", b"{}")

            await provision(js, settings)

            info = await js.stream_info(ATTEMPTS_STREAM)
            assert info.config.retention == RetentionPolicy.INTEREST
            assert info.state.messages == 1, "a batch not yet recorded survives the upgrade"
            assert (await js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)).num_pending == 1
        finally:
            await nc.close()
