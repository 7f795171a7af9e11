"""Preview a draft subscription: against the newest stored events, which would be sent and the exact bodies.

The draft is compiled by :func:`~consumers.rules.compile_rules` and every event
goes through :meth:`~consumers.rules.Rules.prepare`, the code the workers run: a
preview shows what is then delivered (filters, redaction, template and the
integration's own shape included). Nothing is saved, sent or recorded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from consumers import Subscription
from consumers.rules import RenderFailed, Rules, Skip, rules_for
from integrations import get_integration, requires_url
from streams import EventValidationError, decode_event, filter_subjects, normalize_patterns

from ._stream import read_backward, stream_bounds

if TYPE_CHECKING:
    from consumers import Engine

__all__ = (
    "DEFAULT_PREVIEW_EVENTS",
    "MAX_PREVIEW_EVENTS",
    "PreviewItem",
    "PreviewResult",
    "SubscriptionDraft",
    "preview",
)

DEFAULT_PREVIEW_EVENTS: Final = 100
MAX_PREVIEW_EVENTS: Final = 1000
_PREVIEW_URL: Final = "https://preview.invalid/"
"""The URL of a draft that gives none (a preview sends nothing)."""
_WINDOW: Final = 4096
"""Messages held at once while reading newest first."""

PreviewOutcome = Literal["send", "skip", "fail"]


class SubscriptionDraft(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A subscription not saved: the fields that decide what is sent."""

    event_types: Annotated[
        list[str],
        Meta(max_length=100, description="Event type patterns: `issue.created`, `issue.*`, `*.created`, `*`."),
    ]
    integration: Annotated[str, Meta(max_length=100)] = "webhook"
    integration_config: dict[str, Any] = msgspec.field(default_factory=dict)
    url: Annotated[str, Meta(max_length=2048, description="Its destination (some integrations shape it in).")] = ""
    filters: dict[str, Any] | None = None
    template: Annotated[str, Meta(max_length=65536, description="A payload template (Jinja2, sandboxed).")] | None = (
        None
    )
    template_content_type: Annotated[str, Meta(max_length=255)] | None = None
    redact_fields: Annotated[list[Annotated[str, Meta(min_length=1, max_length=200)]], Meta(max_length=100)] = (
        msgspec.field(default_factory=list)
    )
    limit: Annotated[
        int, Meta(ge=1, le=MAX_PREVIEW_EVENTS, description="How many of the newest matching events to run it on.")
    ] = DEFAULT_PREVIEW_EVENTS


class PreviewItem(msgspec.Struct, kw_only=True):
    """One stored event and what the draft would do with it."""

    event_id: uuid.UUID
    event_type: str
    stream_seq: int
    outcome: PreviewOutcome
    """``send``: ``body`` would be sent; ``skip``: nothing (``reason``); ``fail``: a failed attempt (``reason``)."""
    reason: str | None = None
    content_type: str | None = None
    body: str | None = None
    """The exact request body (UTF-8; signed as it is)."""


class PreviewResult(msgspec.Struct, kw_only=True):
    """The draft run on the newest ``examined`` events of its types, newest first."""

    examined: int
    send: int
    skip: int
    fail: int
    items: list[PreviewItem]


def _draft_subscription(draft: SubscriptionDraft) -> Subscription:
    """The draft as a subscription (never stored), its fields checked as on save."""
    integration = get_integration(draft.integration)
    url = draft.url.strip() or (_PREVIEW_URL if requires_url(integration) else "")
    config = integration.validate_config(draft.integration_config, url)
    now = datetime.now(UTC)
    return Subscription(
        id=uuid.uuid4(),
        name="preview",
        url=url,
        event_types=normalize_patterns(draft.event_types),
        integration=integration.name,
        integration_config=config,
        filters=draft.filters,
        template=draft.template,
        template_content_type=draft.template_content_type if draft.template is not None else None,
        redact_fields=list(draft.redact_fields),
        created_at=now,
        updated_at=now,
    )


async def preview(engine: Engine, draft: SubscriptionDraft) -> PreviewResult:
    """Run ``draft`` on the newest ``draft.limit`` stored events of its types (``EventValidationError``
    naming the field for a draft that would be refused on save)."""
    if not 1 <= draft.limit <= MAX_PREVIEW_EVENTS:
        raise EventValidationError("limit", f"must be 1 to {MAX_PREVIEW_EVENTS}")
    sub = _draft_subscription(draft)
    rules = rules_for(sub, engine.settings)
    js, stream = engine.js, engine.settings.stream_name
    bounds = await stream_bounds(js, stream)
    items: list[PreviewItem] = []
    messages = read_backward(
        js, stream, filter_subjects(sub.event_types), first=bounds.first, last=bounds.last, max_window=_WINDOW
    )
    try:
        async for msg in messages:
            items.append(_previewed(rules, msg.data, msg.subject, msg.metadata.sequence.stream))
            if len(items) >= draft.limit:
                break
    finally:
        await messages.aclose()
    count = {kind: sum(1 for i in items if i.outcome == kind) for kind in ("send", "skip", "fail")}
    return PreviewResult(examined=len(items), send=count["send"], skip=count["skip"], fail=count["fail"], items=items)


def _previewed(rules: Rules, raw: bytes, subject: str, seq: int) -> PreviewItem:
    try:
        event = decode_event(raw, subject=subject)
    except EventValidationError as exc:
        # The workers refuse such a message to the dead letters; say so, with no id to show.
        return PreviewItem(event_id=uuid.UUID(int=0), event_type="", stream_seq=seq, outcome="fail", reason=str(exc))
    item = PreviewItem(event_id=event.event_id, event_type=event.event_type, stream_seq=seq, outcome="send")
    prepared = rules.prepare(event, raw)
    if isinstance(prepared, Skip):
        reason = prepared.reason + (f": {prepared.detail}" if prepared.detail else "")
        return msgspec.structs.replace(item, outcome="skip", reason=reason)
    if isinstance(prepared, RenderFailed):
        return msgspec.structs.replace(item, outcome="fail", reason=prepared.error)
    request = prepared.request
    item.content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "application/json")
    item.body = request.body.decode("utf-8", errors="replace")
    return item
