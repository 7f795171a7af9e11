"""The dead letters: list them, show one, redrive one or all of a subscription's.

The dead-letter stream (``TURBOHOOKS_DLQ``) holds, per subscription
(``turbohooks.dlq.<subscription hex>``), the events a worker gave up on: their
attempts ran out (``delivery_failed``, the event and its last attempt kept), or
the worker refused the message itself (``refused``: undecodable, beyond the
decoding bounds, a type outside the catalog or other than its subject's; its
bytes kept). The recorder parks there too (``turbohooks.dlq.attempts``) the
attempts messages the delivery log could not take (``log_refused``): listed
for inspection, never redriven (they are log records, not events). A message
of the stream that is none of these is listed as ``unreadable``.

Redriving them is :mod:`._redrive`'s.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal

import msgspec
from nats.js.errors import NotFoundError as JsNotFoundError

from consumers import AttemptOutcome, AttemptRecord, AttemptTrigger, DeadLetter
from consumers.log import PARKED_SUBJECT
from streams import (
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_ROOT,
    Event,
    EventValidationError,
    NotFoundError,
    decode_event,
)

from ._stream import read_backward, stream_bounds

if TYPE_CHECKING:
    from consumers import Engine

__all__ = (
    "MAX_DEAD_LETTER_SCAN",
    "AttemptSummary",
    "DeadLetterItem",
    "DeadLetterKind",
    "DeadLetterList",
    "Letter",
    "get_dead_letter",
    "letter_subjects",
    "list_dead_letters",
    "load_letter",
    "read_letter",
)

DeadLetterKind = Literal["delivery_failed", "refused", "log_refused", "unreadable"]
"""``delivery_failed`` and ``refused`` as the worker wrote them; ``log_refused``: an attempts message the
recorder parked; ``unreadable``: a message of the dead-letter stream that is not a dead letter."""

MAX_DEAD_LETTER_SCAN: Final = 10_000
"""Messages of the dead-letter stream one listing reads at most; ``next_before_seq`` continues."""
LISTED_RAW: Final = 64 * 1024
"""Bytes of a letter's raw message a listing shows (``show`` gives all the letter holds)."""
_WINDOW: Final = 1024
_NOT_REDRIVABLE: Final[dict[str, str]] = {
    "log_refused": "an attempts message the recorder could not store (a log record, not an event): "
    "kept for inspection, it cannot be redriven",
    "unreadable": "not a dead letter (published to the dead-letter stream by something else): it cannot be redriven",
}
_letter_decoder: Final = msgspec.json.Decoder(DeadLetter)


class AttemptSummary(msgspec.Struct, kw_only=True):
    """The last attempt of a delivery that failed for good."""

    attempt_id: uuid.UUID
    attempt: int
    outcome: AttemptOutcome
    trigger: AttemptTrigger
    request_url: str
    response_code: int | None
    error: str | None
    latency_ms: float | None
    started_at: datetime
    finished_at: datetime

    @classmethod
    def of(cls, record: AttemptRecord) -> AttemptSummary:
        return cls(**{name: getattr(record, name) for name in cls.__struct_fields__})


class DeadLetterItem(msgspec.Struct, kw_only=True):
    """One message of the dead-letter stream, read for people."""

    seq: int
    """Its sequence in the dead-letter stream (what ``show`` and ``redrive`` take)."""
    cause: DeadLetterKind
    reason: str
    subscription_id: uuid.UUID | None
    delivery_id: uuid.UUID | None
    subject: str | None
    """The subject of the event in the events stream, when known."""
    source_stream: str | None
    """Where the original message is: the events stream (``source_seq`` there), or the attempts stream."""
    source_seq: int | None
    dead_at: datetime
    event: Event | None
    """The event envelope, when the kept bytes decode as one."""
    raw: bytes | None
    """The kept bytes when they are not an event, or were refused (base64 in JSON)."""
    raw_truncated: bool
    """``raw`` holds only the start of the message (see ``source_stream``/``source_seq`` for all of it)."""
    last_attempt: AttemptSummary | None
    redrivable: bool
    note: str | None = None
    """Why it cannot be redriven, when it cannot."""


class DeadLetterList(msgspec.Struct, kw_only=True):
    """Dead letters, newest first; ``next_before_seq`` continues."""

    items: list[DeadLetterItem]
    scanned: int
    truncated: bool
    """The scan stopped at its cap before the range was exhausted: more may match."""
    next_before_seq: int | None = None


class Letter(msgspec.Struct, kw_only=True):
    item: DeadLetterItem
    letter: DeadLetter | None


def read_letter(
    seq: int, subject: str, data: bytes, headers: Mapping[str, str], stored_at: datetime, *, events: str, cap: int
) -> Letter:
    """A message of the dead-letter stream as an item (``events``: the events stream's name); never raises.

    ``raw`` is cut to ``cap`` bytes (``raw_truncated`` then says so).
    """
    if subject == PARKED_SUBJECT:
        stream, _, source = headers.get("Turbohooks-Source", "").partition(":")
        return Letter(
            item=DeadLetterItem(
                seq=seq,
                cause="log_refused",
                reason=headers.get("Turbohooks-Reason", "") or "parked by the recorder",
                subscription_id=None,
                delivery_id=None,
                subject=None,
                source_stream=stream or None,
                source_seq=int(source) if source.isdigit() else None,
                dead_at=stored_at,
                event=None,
                raw=data[:cap],
                raw_truncated=len(data) > cap or bool(headers.get("Turbohooks-Truncated")),
                last_attempt=None,
                redrivable=False,
                note=_NOT_REDRIVABLE["log_refused"],
            ),
            letter=None,
        )
    try:
        letter = _letter_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as exc:
        return Letter(
            item=DeadLetterItem(
                seq=seq,
                cause="unreadable",
                reason=f"not a dead letter: {exc}",
                subscription_id=None,
                delivery_id=None,
                subject=None,
                source_stream=None,
                source_seq=None,
                dead_at=stored_at,
                event=None,
                raw=data[:cap],
                raw_truncated=len(data) > cap,
                last_attempt=None,
                redrivable=False,
                note=_NOT_REDRIVABLE["unreadable"],
            ),
            letter=None,
        )
    refused = letter.cause == "refused"
    kept = (letter.raw or b"") if refused else bytes(letter.event)
    event: Event | None = None
    with contextlib.suppress(EventValidationError):
        event = decode_event(kept)
    # Refused: the bytes are the evidence, always shown. Failed: the envelope, or what was kept instead of it.
    raw = kept if refused or event is None else None
    return Letter(
        item=DeadLetterItem(
            seq=seq,
            cause=letter.cause,
            reason=letter.reason,
            subscription_id=letter.subscription_id,
            delivery_id=letter.delivery_id,
            subject=letter.subject or (event.subject if event is not None else None),
            source_stream=events,
            source_seq=letter.stream_seq,
            dead_at=letter.dead_at,
            event=event,
            raw=raw[:cap] if raw is not None else None,
            raw_truncated=letter.raw_truncated or (raw is not None and len(raw) > cap),
            last_attempt=AttemptSummary.of(letter.last_attempt) if letter.last_attempt is not None else None,
            redrivable=True,
        ),
        letter=letter,
    )


def letter_subjects(subscription_id: uuid.UUID | None, cause: DeadLetterKind | None) -> list[str]:
    if cause == "log_refused":
        return [PARKED_SUBJECT]
    if subscription_id is not None:
        return [f"{DEAD_LETTER_SUBJECT_ROOT}.{subscription_id.hex}"]
    return [f"{DEAD_LETTER_SUBJECT_ROOT}.>"]


async def list_dead_letters(
    engine: Engine,
    *,
    subscription_id: uuid.UUID | None = None,
    cause: DeadLetterKind | None = None,
    since: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> DeadLetterList:
    """Dead letters newest first, filtered; at most ``limit``, reading at most :data:`MAX_DEAD_LETTER_SCAN`."""
    if cause == "log_refused" and subscription_id is not None:
        return DeadLetterList(items=[], scanned=0, truncated=False)
    js, events = engine.js, engine.settings.stream_name
    bounds = await stream_bounds(js, DEAD_LETTER_STREAM)
    last = bounds.last if before_seq is None else min(bounds.last, before_seq - 1)
    items: list[DeadLetterItem] = []
    scanned = 0
    next_before: int | None = None
    truncated = False
    reader = read_backward(
        js,
        DEAD_LETTER_STREAM,
        letter_subjects(subscription_id, cause),
        first=bounds.first,
        last=last,
        max_window=_WINDOW,
    )
    async with contextlib.aclosing(reader) as messages:
        async for msg in messages:
            meta = msg.metadata
            if since is not None and meta.timestamp < since:
                break  # newest first: everything further back is older still
            scanned += 1
            seq = meta.sequence.stream
            found = read_letter(
                seq, msg.subject, msg.data, msg.headers or {}, meta.timestamp, events=events, cap=LISTED_RAW
            ).item
            if cause is None or found.cause == cause:
                items.append(found)
            if len(items) >= limit or scanned >= MAX_DEAD_LETTER_SCAN:
                next_before = seq if seq > bounds.first else None
                truncated = len(items) < limit and next_before is not None
                break
    return DeadLetterList(items=items, scanned=scanned, truncated=truncated, next_before_seq=next_before)


async def load_letter(engine: Engine, seq: int, *, cap: int) -> Letter:
    try:
        msg = await engine.js.get_msg(DEAD_LETTER_STREAM, seq)
    except JsNotFoundError:
        raise NotFoundError(
            f"dead letter {seq} is not in {DEAD_LETTER_STREAM} (redriven, aged out, or never written)"
        ) from None
    stored_at = msg.time if isinstance(msg.time, datetime) else datetime.fromtimestamp(0, UTC)
    return read_letter(
        seq,
        msg.subject or "",
        msg.data or b"",
        msg.headers or {},
        stored_at,
        events=engine.settings.stream_name,
        cap=cap,
    )


async def get_dead_letter(engine: Engine, seq: int) -> DeadLetterItem:
    """One dead letter with all it keeps; ``NotFoundError`` if there is none at ``seq``."""
    return (await load_letter(engine, seq, cap=1 << 62)).item
