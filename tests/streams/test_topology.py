"""Stream provisioning against a real nats-server."""

from __future__ import annotations

import uuid
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from streams import (
    ATTEMPTS_STREAM,
    ATTEMPTS_SUBJECT_ROOT,
    LEGACY_RECORDER_CONSUMERS,
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
    # Each batch acknowledged alone: a recorder killed after a fetch leaves that batch for the next one.
    assert recorder.config.ack_policy == AckPolicy.EXPLICIT
    assert recorder.config.filter_subject == f"{ATTEMPTS_SUBJECT_ROOT}.>"
    await provision(js, settings)  # idempotent, consumer included


async def test_a_legacy_recorder_consumer_is_replaced_from_its_first_unacknowledged_batch(tmp_path: Path) -> None:
    """The ack-all consumer of earlier releases: its acknowledged batches stay settled, the rest are kept."""
    async with EmbeddedNats(store_dir=tmp_path / "js", config=ROOT / "nats" / "test.conf") as server:
        settings = Settings(nats_url=server.url, data_dir=tmp_path / "data", stream_max_bytes=64 << 20)
        nc = await connect_nats(settings)
        try:
            js = nc.jetstream()
            await provision(js, settings)
            await js.delete_consumer(ATTEMPTS_STREAM, RECORDER_CONSUMER)
            legacy = LEGACY_RECORDER_CONSUMERS[0]
            await js.add_consumer(
                ATTEMPTS_STREAM,
                ConsumerConfig(
                    durable_name=legacy, filter_subject=f"{ATTEMPTS_SUBJECT_ROOT}.>", ack_policy=AckPolicy.ALL
                ),
            )
            for i in range(3):
                await js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.old", f'{{"n": {i}}}'.encode())
            old = await js.pull_subscribe_bind(durable=legacy, stream=ATTEMPTS_STREAM)
            msgs = await old.fetch(2, timeout=5)
            await msgs[-1].ack_sync()  # the old recorder stored the first two
            await old.unsubscribe()

            await provision(js, settings)

            info = await js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)
            assert info.num_pending == 1, "only the unrecorded third batch is left to record"
            assert (await js.stream_info(ATTEMPTS_STREAM)).state.messages == 1
            assert legacy not in [c.name for c in await js.consumers_info(ATTEMPTS_STREAM)]
            await provision(js, settings)  # idempotent once converted
        finally:
            await nc.close()


async def test_an_older_attempts_stream_is_converted_in_place_keeping_its_batches(tmp_path: Path) -> None:
    """Stores made before interest retention (limits, 7 days) upgrade on provision, unrecorded batches kept."""
    legacy = LEGACY_RECORDER_CONSUMERS[0]
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
                ConsumerConfig(durable_name=legacy, filter_subject=subjects[0], ack_policy=AckPolicy.ALL),
            )
            await js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.old", b"{}")

            await provision(js, settings)

            info = await js.stream_info(ATTEMPTS_STREAM)
            assert info.config.retention == RetentionPolicy.INTEREST
            assert info.state.messages == 1, "a batch not yet recorded survives the upgrade"
            assert (await js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)).num_pending == 1
            names = [c.name for c in await js.consumers_info(ATTEMPTS_STREAM)]
            assert legacy not in names, "the legacy ack-all consumer is replaced"
        finally:
            await nc.close()
