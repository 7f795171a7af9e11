"""JetStream topology: the streams turbohooks needs, provisioned idempotently.

``provision()`` creates what is missing and updates what the settings changed.
It never deletes a stream or purges it, so running it on every start is safe.
"""

from __future__ import annotations

from typing import Final

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError
from nats.js.errors import NotFoundError as JsNotFoundError

from ._errors import TurbohooksError
from ._subjects import SUBJECT_ROOT
from .settings import Settings

__all__ = (
    "ATTEMPTS_STREAM",
    "ATTEMPTS_SUBJECT_ROOT",
    "DEAD_LETTER_STREAM",
    "DEAD_LETTER_SUBJECT_ROOT",
    "LEGACY_RECORDER_CONSUMERS",
    "RECORDER_CONSUMER",
    "RECORDER_FETCH",
    "REDELIVER_STREAM",
    "REDELIVER_SUBJECT_ROOT",
    "ensure_recorder_consumer",
    "ensure_stream",
    "events_stream_config",
    "internal_stream_configs",
    "provision",
    "recorder_consumer_config",
)

ATTEMPTS_STREAM: Final = "TURBOHOOKS_ATTEMPTS"
"""Internal: one message per delivery attempt, written to SQL by the recorder."""
ATTEMPTS_SUBJECT_ROOT: Final = "turbohooks.attempts"
RECORDER_CONSUMER: Final = "delivery_log"
"""The recorder's durable consumer on the attempts stream, shared by every recorder; each batch acknowledged alone."""
LEGACY_RECORDER_CONSUMERS: Final = ("recorder",)
"""The recorder's consumers of earlier releases (``AckPolicy.ALL``): replaced on provision, their position kept.

With "all up to this one" acknowledgements, a recorder killed after fetching a batch lost it for good: the
next recorder's ack settled it, and interest retention deleted it, before ``ack_wait`` handed it out again.
"""
RECORDER_FETCH: Final = 64
"""Attempt batches the recorder fetches, and writes in one transaction, at a time."""
DEAD_LETTER_STREAM: Final = "TURBOHOOKS_DLQ"
"""Internal: events whose attempts ran out, with their last response."""
DEAD_LETTER_SUBJECT_ROOT: Final = "turbohooks.dlq"
REDELIVER_STREAM: Final = "TURBOHOOKS_REDELIVER"
"""Internal work queue: manual retries and replays, each delivered once by a worker of its integration."""
REDELIVER_SUBJECT_ROOT: Final = "turbohooks.redeliver"

# Fields that provisioning keeps in line with the settings. Anything else an
# operator changed by hand (placement, sources) is left as it is.
_MANAGED: Final = ("subjects", "max_age", "max_bytes", "num_replicas", "duplicate_window", "storage", "retention")


def events_stream_config(settings: Settings) -> js_api.StreamConfig:
    """The events stream over ``turbo.>``, from the settings."""
    return js_api.StreamConfig(
        name=settings.stream_name,
        description="Turbo events: every change, as published by EventPublisher",
        subjects=[f"{SUBJECT_ROOT}.>"],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=settings.stream_max_age,
        max_bytes=settings.stream_max_bytes,
        num_replicas=settings.stream_replicas,
        duplicate_window=settings.duplicate_window,
        discard=js_api.DiscardPolicy.OLD,
        allow_direct=True,
    )


def _internal_stream(
    settings: Settings, name: str, description: str, root: str, retention: js_api.RetentionPolicy, max_age: float
) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=name,
        description=description,
        subjects=[f"{root}.>"],
        retention=retention,
        storage=js_api.StorageType.FILE,
        max_age=max_age,
        num_replicas=settings.stream_replicas,
        duplicate_window=settings.duplicate_window,
    )


def internal_stream_configs(settings: Settings) -> list[js_api.StreamConfig]:
    """The delivery engine's own streams, kept outside ``turbo.>``."""
    return [
        # Interest: a batch is removed once the recorder acknowledged it (it
        # is in SQL). Kept for max_age instead, at a few KB per delivery, it
        # filled the server's store within hours under load. Safe because
        # provision() creates the recorder's consumer with the stream: a
        # batch published before any recorder ran is kept for it.
        _internal_stream(
            settings,
            ATTEMPTS_STREAM,
            "turbohooks: delivery attempt outcomes, for the recorder",
            ATTEMPTS_SUBJECT_ROOT,
            js_api.RetentionPolicy.INTEREST,
            settings.stream_max_age,
        ),
        _internal_stream(
            settings,
            DEAD_LETTER_STREAM,
            "turbohooks: events whose delivery attempts ran out",
            DEAD_LETTER_SUBJECT_ROOT,
            js_api.RetentionPolicy.LIMITS,
            max(settings.stream_max_age, 30 * 86400.0),
        ),
        _internal_stream(
            settings,
            REDELIVER_STREAM,
            "turbohooks: manual retries and replays, for the workers",
            REDELIVER_SUBJECT_ROOT,
            js_api.RetentionPolicy.WORK_QUEUE,
            settings.stream_max_age,
        ),
    ]


def _differs(have: js_api.StreamConfig, want: js_api.StreamConfig) -> bool:
    def norm(value: object) -> object:
        return sorted(value) if isinstance(value, list) else value

    # A field left unset (None) wants the server's default (the internal streams'
    # max_bytes, stored as -1): not a difference, or every start would update them.
    return any(getattr(want, f) is not None and norm(getattr(have, f)) != norm(getattr(want, f)) for f in _MANAGED)


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> js_api.StreamInfo:
    """Create the stream when missing, update it when its managed fields differ."""
    assert config.name is not None
    try:
        try:
            info = await js.stream_info(config.name)
        except JsNotFoundError:
            return await js.add_stream(config)
        if _differs(info.config, config):
            return await js.update_stream(config)
    except JsNotFoundError:
        raise
    except APIError as exc:
        hint = ""
        if exc.err_code == 10047:  # insufficient storage: max_bytes is reserved up front
            hint = "; lower TURBOHOOKS_STREAM_MAX_BYTES or raise the server's max_file_store"
        raise TurbohooksError(f"turbohooks: JetStream refused stream {config.name}: {exc.description}{hint}") from exc
    return info


def recorder_consumer_config(start_seq: int | None = None) -> js_api.ConsumerConfig:
    """The recorder's consumer: every attempt batch, each acknowledged once it is in SQL.

    ``start_seq``: where a consumer replacing a legacy one starts (its first unacknowledged batch).
    """
    return js_api.ConsumerConfig(
        durable_name=RECORDER_CONSUMER,
        description="turbohooks: the recorder (attempts into the delivery log)",
        filter_subject=f"{ATTEMPTS_SUBJECT_ROOT}.>",
        deliver_policy=js_api.DeliverPolicy.ALL if start_seq is None else js_api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_ack_pending=RECORDER_FETCH * 4,
    )


async def ensure_recorder_consumer(js: JetStreamContext) -> None:
    """Create the recorder's consumer unless it exists; replace a legacy one from where it stood.

    Looked up first: a role without the right to create it (least privilege) can still check it is there.
    """
    try:
        await js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)
        return
    except JsNotFoundError:
        pass
    legacy_floor: int | None = None
    legacy: list[str] = []
    for name in LEGACY_RECORDER_CONSUMERS:
        try:
            info = await js.consumer_info(ATTEMPTS_STREAM, name)
        except JsNotFoundError:
            continue
        legacy.append(name)
        floor = (info.ack_floor.stream_seq if info.ack_floor is not None else 0) or 0
        legacy_floor = floor if legacy_floor is None else min(legacy_floor, floor)
    try:
        start = None if legacy_floor is None else legacy_floor + 1
        await js.add_consumer(ATTEMPTS_STREAM, recorder_consumer_config(start))
        # Only once the new consumer holds interest: deleting first would let the stream drop the batches.
        for name in legacy:
            await js.delete_consumer(ATTEMPTS_STREAM, name)
    except APIError as exc:
        raise TurbohooksError(
            f"turbohooks: JetStream refused the recorder's consumer on {ATTEMPTS_STREAM}: {exc.description}"
        ) from exc


async def provision(js: JetStreamContext, settings: Settings) -> list[js_api.StreamInfo]:
    """Provision every stream turbohooks uses, and the recorder's consumer; safe to call on every start."""
    configs = [events_stream_config(settings), *internal_stream_configs(settings)]
    infos = [await ensure_stream(js, config) for config in configs]
    # Before any worker publishes an attempt: the attempts stream keeps a
    # message only while a consumer is interested in it.
    await ensure_recorder_consumer(js)
    return infos
