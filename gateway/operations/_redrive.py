"""Redriving dead letters: one, or every one of a subscription.

A letter is queued through :func:`~gateway.operations.queue_redelivery` (the
one "not active" rule applies): a ``delivery_failed`` letter's event as kept
(read back from the events stream when the letter kept only a reference); a
``refused`` letter's bytes (all of them, from the events stream, when the
letter kept only their start) only if they pass today's decoding rules with
their subject and match the subscription's event types, else ``ConflictError``
with the reason, and the letter stays. A letter queued leaves the dead letters:
its attempt is in the delivery log from then on, retried from there if it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Final

import msgspec
from nats.js.errors import NotFoundError as JsNotFoundError

from consumers import DeadLetter, delivery_id_for
from streams import DEAD_LETTER_STREAM, ConflictError, Event, EventValidationError, decode_event, match_event_types

from ._dead_letters import letter_subjects, load_letter, read_letter
from ._queue import queue_redelivery, require_active
from ._stream import read_forward, stream_bounds

if TYPE_CHECKING:
    from consumers import Engine, Subscription

__all__ = (
    "MAX_REDRIVE",
    "DeadLetterRedriven",
    "RedriveRefusal",
    "SubscriptionRedrive",
    "redrive_dead_letter",
    "redrive_subscription_dead_letters",
)

MAX_REDRIVE: Final = 10_000
"""Dead letters one subscription-wide redrive handles at most."""
_REFUSALS_SHOWN: Final = 100
_BATCH: Final = 32


class DeadLetterRedriven(msgspec.Struct, kw_only=True):
    """A dead letter queued for one more attempt (and taken out of the dead letters)."""

    seq: int
    subscription_id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    queued: bool = True


class RedriveRefusal(msgspec.Struct, kw_only=True):
    """A dead letter a subscription-wide redrive left where it was, and why."""

    seq: int
    reason: str


class SubscriptionRedrive(msgspec.Struct, kw_only=True):
    """What a subscription-wide redrive queued, and what it left."""

    subscription_id: uuid.UUID
    queued: int
    refused: int
    """Letters left in the dead letters (still undecodable, no longer in the events stream…)."""
    refusals: list[RedriveRefusal]
    """The first of them, with why."""
    truncated: bool
    """More than ``MAX_REDRIVE`` letters: call again for the rest."""


async def _stored(engine: Engine, seq: int) -> tuple[str, bytes] | None:
    """The subject and bytes of the events stream's message ``seq``, if it still holds it."""
    try:
        msg = await engine.js.get_msg(engine.settings.stream_name, seq)
    except JsNotFoundError:
        return None
    return msg.subject or "", msg.data or b""


async def _event_of(engine: Engine, sub: Subscription, seq: int, letter: DeadLetter) -> tuple[bytes, Event]:
    """The envelope to queue for ``letter`` and its event; ``ConflictError`` saying why there is none."""
    where = f"dead letter {seq}"
    gone = (
        f"the events stream no longer holds seq {letter.stream_seq} (older than TURBOHOOKS_STREAM_MAX_AGE); "
        "it cannot be delivered again"
    )
    if letter.cause == "delivery_failed":
        payload = bytes(letter.event)
        try:
            event = decode_event(payload)
        except EventValidationError:
            # The event was too large for a letter, which kept a reference: read it back.
            stored = await _stored(engine, letter.stream_seq)
            payload = stored[1] if stored is not None else b""
            try:
                event = decode_event(payload)
            except EventValidationError:
                raise ConflictError(f"{where}: {gone}") from None
        if letter.delivery_id is not None and delivery_id_for(sub.id, event.event_id) != letter.delivery_id:
            raise ConflictError(f"{where}: the events stream's seq {letter.stream_seq} is not its event any more")
        return payload, event
    payload = letter.raw or b""
    subject = letter.subject
    if letter.raw_truncated or letter.raw is None or subject is None:
        stored = await _stored(engine, letter.stream_seq)
        if stored is None:
            raise ConflictError(f"{where}: only part of the message was kept, and {gone}")
        subject, payload = subject or stored[0], stored[1]
    try:
        event = decode_event(payload, subject=subject)
    except EventValidationError as exc:
        raise ConflictError(f"{where} is still refused by the decoding rules: {exc}") from None
    if event.event_type not in match_event_types(sub.event_types):
        raise ConflictError(
            f"{where}: its type {event.event_type!r} is not among the subscription's event types "
            f"({', '.join(sub.event_types)})"
        )
    return payload, event


async def _redrive(engine: Engine, sub: Subscription, seq: int, letter: DeadLetter) -> DeadLetterRedriven:
    payload, event = await _event_of(engine, sub, seq, letter)
    await queue_redelivery(engine, sub, payload, trigger="manual", stream_seq=letter.stream_seq)
    # Queued (JetStream acknowledged it): the delivery log has the attempt from now on. A failed
    # delete leaves the letter listed; redriving it again sends a duplicate, deduplicated by webhook-id.
    with contextlib.suppress(JsNotFoundError):
        await engine.js.delete_msg(DEAD_LETTER_STREAM, seq)
    return DeadLetterRedriven(
        seq=seq, subscription_id=sub.id, delivery_id=delivery_id_for(sub.id, event.event_id), event_id=event.event_id
    )


async def redrive_dead_letter(engine: Engine, seq: int) -> DeadLetterRedriven:
    """Queue one more attempt of the dead letter at ``seq`` and take it out of the dead letters.

    ``NotFoundError`` if there is no letter at ``seq`` (or its subscription is gone);
    ``ConflictError`` if the subscription is not active, the letter is not redrivable
    (parked by the recorder, unreadable), or its message still does not decode (the reason said).
    """
    loaded = await load_letter(engine, seq, cap=1 << 62)
    letter = loaded.letter
    if letter is None:
        raise ConflictError(f"dead letter {seq} is {loaded.item.cause}: {loaded.item.note}")
    sub = await engine.service.get(letter.subscription_id)
    require_active(sub, "redrive its dead letters")
    return await _redrive(engine, sub, seq, letter)


async def redrive_subscription_dead_letters(
    engine: Engine, subscription_id: uuid.UUID, *, max_letters: int = MAX_REDRIVE
) -> SubscriptionRedrive:
    """Redrive every dead letter of a subscription, oldest first; the ones that cannot be are counted, with why."""
    sub = await engine.service.get(subscription_id)
    require_active(sub, "redrive its dead letters")
    js, events = engine.js, engine.settings.stream_name
    bounds = await stream_bounds(js, DEAD_LETTER_STREAM)
    queued = 0
    refusals: list[RedriveRefusal] = []
    pending: list[tuple[int, DeadLetter]] = []
    handled = 0
    truncated = False

    async def one(seq: int, letter: DeadLetter) -> None:
        nonlocal queued
        try:
            await _redrive(engine, sub, seq, letter)
        except ConflictError as exc:
            refusals.append(RedriveRefusal(seq=seq, reason=str(exc)))
        else:
            queued += 1

    async def flush() -> None:
        await asyncio.gather(*(one(seq, letter) for seq, letter in pending))
        pending.clear()

    reader = read_forward(js, DEAD_LETTER_STREAM, letter_subjects(sub.id, None), first=bounds.first, last=bounds.last)
    async with contextlib.aclosing(reader) as messages:
        async for msg in messages:
            if handled >= max_letters:
                truncated = True
                break
            handled += 1
            meta = msg.metadata
            seq = meta.sequence.stream
            loaded = read_letter(seq, msg.subject, msg.data, msg.headers or {}, meta.timestamp, events=events, cap=0)
            if loaded.letter is None or loaded.letter.subscription_id != sub.id:
                refusals.append(RedriveRefusal(seq=seq, reason=loaded.item.note or "not this subscription's letter"))
                continue
            pending.append((seq, loaded.letter))
            if len(pending) >= _BATCH:
                await flush()
    await flush()
    refusals.sort(key=lambda r: r.seq)
    return SubscriptionRedrive(
        subscription_id=sub.id,
        queued=queued,
        refused=len(refusals),
        refusals=refusals[:_REFUSALS_SHOWN],
        truncated=truncated,
    )
