"""The event envelope of the design document, as msgspec Structs.

Schema evolution follows msgspec's rules: new fields get defaults, existing
field types never change, and ``schema_version`` is bumped when the meaning of
a field changes. Decoders ignore fields they do not know, so old consumers keep
reading newer events.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from ._catalog import KNOWN_EVENT_TYPES, TURBO_SOURCE
from ._errors import EventValidationError
from ._subjects import event_subject, event_type_of_subject

__all__ = (
    "CAUSATION_HEADER",
    "MAX_EVENT_BYTES",
    "MAX_EVENT_DEPTH",
    "SCHEMA_VERSION",
    "Actor",
    "ActorType",
    "CausationChain",
    "Event",
    "EventContext",
    "EventData",
    "build_event",
    "causation_token",
    "decode_event",
    "encode_event",
    "json_object",
)

SCHEMA_VERSION: Final = 1

MAX_EVENT_BYTES: Final = 8 * 1024 * 1024
"""The largest envelope :func:`decode_event` reads: 8 MiB.

Twice the ``max_payload`` of ``nats/dev.conf`` (4 MB; NATS advises at most
8 MB), so no event the stream can hold is refused; larger input (an API body,
a file) is refused before parsing.
"""

MAX_EVENT_DEPTH: Final = 100
"""The deepest nesting of JSON arrays and objects :func:`decode_event` reads, the envelope counting as 1.

A real event is the envelope, ``data``, ``current`` and an entity's fields: a
handful of levels, a few dozen for a rich-text document tree. Parsing (and every
consumer walking the result) recurses once per level, and Python's stack gives
out near 1,000: an event 2,000 levels deep raised ``RecursionError`` out of every
loop that read it.
"""

ActorType = Literal["user", "ai", "system"]


class Actor(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Who caused the event."""

    type: ActorType = "system"
    """``user``, ``ai`` or ``system``. Handlers such as Claude skip ``ai`` to avoid loops."""
    name: str = "turbo"
    """A user's e-mail, an agent's name, or a system component."""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class EventData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """The entity's state: now, before (for updates), and which fields changed."""

    current: dict[str, Any] = msgspec.field(default_factory=dict)
    previous: dict[str, Any] | None = None
    changes: list[str] = msgspec.field(default_factory=list)


class EventContext(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """Ids of the entities around the one the event is about."""

    project_id: str | None = None
    milestone_id: str | None = None
    initiative_id: str | None = None
    issue_id: str | None = None
    comment_id: str | None = None
    document_id: str | None = None
    tag_id: str | None = None
    literature_id: str | None = None
    terminal_session_id: str | None = None
    calendar_event_id: str | None = None


class CausationChain(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, gc=False
):
    """Where an event caused by a delivery stands in its chain: loop prevention reads it.

    Set on events published because of a delivery (an integration's reply, an
    inbound webhook answering a subscription's own call, any receiver passing
    back the delivery's ``Turbohooks-Causation`` header); ``None`` on the rest.
    """

    depth: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Deliveries in a row that led to this event: 1 for a reply to a delivery of an event without a chain."""
    subscription_id: uuid.UUID | None = None
    """The subscription whose delivery caused this event: it is never delivered to that subscription."""


CAUSATION_HEADER: Final = "Turbohooks-Causation"
"""The delivery header a receiver passes back (``causation``) when it publishes an event because of the delivery.

Its value is :func:`causation_token`'s: ``<event id>;depth=<n>;subscription=<subscription id>``.
"""


def causation_token(event: Event, subscription_id: uuid.UUID) -> str:
    """The :data:`CAUSATION_HEADER` of a delivery of ``event`` to a subscription: what a reply to it carries."""
    depth = (event.chain.depth if event.chain is not None else 0) + 1
    return f"{event.event_id};depth={depth};subscription={subscription_id}"


def _parse_causation(value: object) -> tuple[uuid.UUID, CausationChain]:
    """``(causation_id, chain)`` of a :func:`causation_token`; refused naming ``causation``."""
    if not isinstance(value, str):
        raise EventValidationError(
            "causation", f"must be a string (the {CAUSATION_HEADER} header), got {type(value).__name__}"
        )
    head, *parts = (part.strip() for part in value.split(";"))
    fields: dict[str, str] = {}
    for part in parts:
        key, sep, item = part.partition("=")
        if not sep or key not in ("depth", "subscription") or key in fields:
            raise EventValidationError("causation", f"{part!r} is not depth=<n> or subscription=<id> (once each)")
        fields[key] = item.strip()
    event_id = _uuid(head, "causation")
    try:
        depth = int(fields.get("depth", "1"))
    except ValueError:
        raise EventValidationError("causation", f"depth {fields['depth']!r} is not a whole number") from None
    if depth < 1:
        raise EventValidationError("causation", "depth must be 1 or more")
    subscription = fields.get("subscription")
    return event_id, CausationChain(
        depth=depth, subscription_id=_uuid(subscription, "causation") if subscription else None
    )


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One event, as stored in JetStream and delivered to webhooks."""

    # gc=False (here and in the parts above): events are plain data that never
    # refer back to themselves, and a batch of thousands of them held by
    # emit_many() was traversed by every full collection (a third of that
    # path's time). Their dicts and lists are still tracked.

    event_id: uuid.UUID
    event_type: str
    timestamp: datetime
    entity_type: str
    entity_id: str
    action: str
    # default_factory (not a shared default instance): Litestar's OpenAPI
    # generation hashes defaults, and these hold dicts.
    actor: Actor = msgspec.field(default_factory=Actor)
    data: EventData = msgspec.field(default_factory=EventData)
    context: EventContext = msgspec.field(default_factory=EventContext)
    causation_id: uuid.UUID | None = None
    """The event that caused this one (a derived event, an AI's reply), if any."""
    schema_version: int = SCHEMA_VERSION
    chain: CausationChain | None = None
    """Set when a delivery caused this event: its depth and the delivering subscription (loop prevention)."""

    @property
    def subject(self) -> str:
        """The JetStream subject of the event: ``turbo.<event_type>``."""
        return event_subject(self.event_type)


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """The event as compact JSON bytes."""
    return _encoder.encode(event)


def decode_event(payload: bytes | str, *, subject: str | None = None) -> Event:
    """Parse and check an event; raise :class:`EventValidationError` naming the field.

    Nothing else is raised, whatever ``payload`` holds: input larger than
    :data:`MAX_EVENT_BYTES` or nested deeper than :data:`MAX_EVENT_DEPTH` is
    refused before parsing. With ``subject`` (the subject the message was
    stored under), the subject decides the type: ``turbo.X.Y`` requires type
    ``X.Y`` to be in the catalog and to be the envelope's ``event_type``.
    """
    if isinstance(payload, str):
        raw = payload.encode("utf-8", errors="surrogatepass")
    elif isinstance(payload, bytes):
        raw = payload
    else:  # any buffer msgspec reads: bytearray, memoryview, msgspec.Raw (a redelivery request's event)
        raw = bytes(memoryview(payload))
    if len(raw) > MAX_EVENT_BYTES:
        raise EventValidationError("body", f"is larger than {MAX_EVENT_BYTES} bytes ({len(raw)})")
    _check_depth(raw)
    try:
        event = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise EventValidationError(_path_of(exc), str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise EventValidationError("body", f"is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # a deep stack at the call site: still a refusal, never a crash
        raise EventValidationError("body", "is nested too deeply to parse here") from exc
    if subject is not None:
        _check_subject(event, subject)
    return event


def _check_subject(event: Event, subject: str) -> None:
    expected = event_type_of_subject(subject)
    if expected not in KNOWN_EVENT_TYPES:
        raise EventValidationError("event_type", f"{subject} carries type {expected!r}, which is not in the catalog")
    if event.event_type != expected:
        raise EventValidationError(
            "event_type", f"is {event.event_type!r} but the event was published on {subject} (type {expected!r})"
        )


# A JSON string (escapes included), an opening bracket (group 1), or a closing one.
_TOKENS: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|([\[{])|[\]}]', re.DOTALL)


def _check_depth(raw: bytes) -> None:
    """Refuse ``raw`` when its arrays and objects nest deeper than :data:`MAX_EVENT_DEPTH`.

    Counting every bracket is two ``memchr``-speed scans; only an input with more
    opening brackets than the limit (brackets in strings included) is walked
    token by token, strings skipped whole by the regular expression.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_EVENT_DEPTH:
        return
    depth = 0
    for token in _TOKENS.finditer(raw):
        if token.lastindex:  # an opening bracket
            depth += 1
            if depth > MAX_EVENT_DEPTH:
                raise EventValidationError("body", f"is nested deeper than {MAX_EVENT_DEPTH} levels")
        elif token.end() - token.start() == 1:  # a closing bracket (a string is 2 bytes at least)
            depth -= 1


def _path_of(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    marker = "at `$."
    if marker in message:
        return message.split(marker, 1)[1].split("`", 1)[0]
    return "event"


def _convert(value: object, kind: type[msgspec.Struct], field: str) -> Any:
    if isinstance(value, kind):
        return value
    if not isinstance(value, Mapping):
        raise EventValidationError(field, f"must be a JSON object, got {type(value).__name__}")
    try:
        return msgspec.convert(dict(value), kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        inner = _path_of(exc) if "at `$." in message else ""
        raise EventValidationError(f"{field}.{inner}" if inner else field, message.split(" - at ")[0]) from exc


def json_object(value: object, field: str) -> dict[str, Any]:
    """``value`` as the JSON object subscribers will see (datetimes as ISO strings); refused naming ``field``."""
    if not isinstance(value, Mapping):
        raise EventValidationError(field, f"must be a JSON object, got {type(value).__name__}")
    try:
        # Round-trip once so that anything JSON cannot carry is refused here,
        # before publishing, rather than by a consumer later.
        return msgspec.json.decode(_encoder.encode(dict(value)))  # type: ignore[no-any-return]
    except (TypeError, msgspec.EncodeError) as exc:
        raise EventValidationError(field, f"is not JSON-serialisable: {exc}") from exc


def build_event(
    *,
    event_type: str,
    entity_id: object,
    entity_type: str | None = None,
    data: EventData | Mapping[str, Any] | None = None,
    context: EventContext | Mapping[str, Any] | None = None,
    actor: Actor | Mapping[str, Any] | None = None,
    event_id: uuid.UUID | str | None = None,
    timestamp: datetime | None = None,
    causation_id: uuid.UUID | str | None = None,
    chain: CausationChain | Mapping[str, Any] | None = None,
    causation: str | None = None,
) -> Event:
    """Check every input against the contract and build the event.

    ``data`` has the design's shape ``{"current": ..., "previous": ..., "changes": [...]}``.
    ``causation`` is a delivery's :data:`CAUSATION_HEADER`, passed back by whoever
    publishes this event because of that delivery: it sets ``causation_id`` and
    ``chain`` (a ``causation_id`` given too must be the same event).
    Raises :class:`EventValidationError` naming the first bad field.
    """
    if causation is not None:
        caused_by, chain = _parse_causation(causation)
        if causation_id is not None and _uuid(causation_id, "causation_id") != caused_by:
            raise EventValidationError("causation_id", f"is not the event {caused_by} named by causation")
        causation_id = caused_by
    info = KNOWN_EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if info is None:
        raise EventValidationError(
            "event_type", f"unknown event type {event_type!r}; `turbohooks events` lists the catalog"
        )
    # An external event names the entity its payload is about (a comment on a pull request).
    if entity_type is not None and entity_type != info.entity_type and info.source == TURBO_SOURCE:
        raise EventValidationError("entity_type", f"{event_type} is about a {info.entity_type!r}, not {entity_type!r}")
    if entity_id is None or (isinstance(entity_id, str) and not entity_id.strip()):
        raise EventValidationError("entity_id", "is required")
    if not isinstance(entity_id, str | int | uuid.UUID) or isinstance(entity_id, bool):
        raise EventValidationError("entity_id", f"must be a string, integer or UUID, got {type(entity_id).__name__}")

    if data is None:
        event_data = EventData()
    else:
        if not isinstance(data, EventData):
            data = json_object(data, "data")
        event_data = _convert(data, EventData, "data")
    if timestamp is None:
        timestamp = datetime.now(UTC)
    elif timestamp.tzinfo is None:
        raise EventValidationError("timestamp", "must carry a time zone (UTC is expected)")
    return Event(
        event_id=_uuid(event_id, "event_id") if event_id is not None else uuid.uuid4(),
        event_type=event_type,
        timestamp=timestamp.astimezone(UTC),
        entity_type=entity_type or info.entity_type,
        entity_id=str(entity_id),
        action=info.action,
        actor=_convert(actor, Actor, "actor") if actor is not None else Actor(),
        data=event_data,
        context=_convert(context, EventContext, "context") if context is not None else EventContext(),
        causation_id=_uuid(causation_id, "causation_id") if causation_id is not None else None,
        chain=_convert(chain, CausationChain, "chain") if chain is not None else None,
    )


def _uuid(value: uuid.UUID | str, field: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise EventValidationError(field, f"{value!r} is not a UUID") from None
