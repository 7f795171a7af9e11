"""Before a subscription with a template is saved: its rules, run against real events of each type it matches.

One event of each matching type is read from the events stream (the newest of
its subject, a direct read: no consumer is created); a type with no stored
event yet gets a catalog sample. A template that fails on any of them is
refused, naming the event type, the template line and the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from streams import EventValidationError, build_event, decode_event, encode_event, event_subject, match_event_types

from ._rules import rules_for
from ._templates import RenderFailed

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from streams import Event, Settings

    from .._messages import Subscription

__all__ = ("catalog_sample", "check_rules_on_save", "stored_samples")

_SAMPLE_ID: Final = "sample-1"


def catalog_sample(event_type: str) -> Event:
    """A plausible event of ``event_type`` for a type the stream holds none of."""
    return build_event(
        event_type=event_type,
        entity_id=_SAMPLE_ID,
        data={
            "current": {"id": _SAMPLE_ID, "title": "A sample", "status": "todo", "priority": "medium"},
            "previous": {"id": _SAMPLE_ID, "title": "A sample", "status": "backlog", "priority": "medium"},
            "changes": ["status"],
        },
        actor={"type": "user", "name": "sample@turbohooks.dev"},
        context={"project_id": "sample-project"},
    )


async def stored_samples(js: JetStreamContext, stream: str, patterns: list[str]) -> list[tuple[Event, bytes]]:
    """One event (with its bytes) of each catalog type ``patterns`` match: the newest stored, else a sample."""
    samples: list[tuple[Event, bytes]] = []
    for event_type in match_event_types(patterns):
        event: Event | None = None
        try:
            msg = await js.get_last_msg(stream, event_subject(event_type))
            if msg.data:
                raw = bytes(msg.data)
                event = decode_event(raw, subject=msg.subject)
        except (NotFoundError, EventValidationError):
            event = None
        except (NatsError, TimeoutError, OSError):
            event = None  # the stream unreachable: the sample still checks the template
        if event is None:
            event = catalog_sample(event_type)
            raw = encode_event(event)
        samples.append((event, raw))
    return samples


async def check_rules_on_save(sub: Subscription, js: JetStreamContext, settings: Settings) -> None:
    """Refuse (``EventValidationError``, field ``template``) a subscription whose template does not compile
    or fails on a stored event (or a sample) of a type it matches; nothing to do without a template."""
    if sub.template is None:
        if sub.template_content_type is not None:
            raise EventValidationError("template_content_type", "is the content type of a template; there is none")
        return
    rules = rules_for(sub, settings)
    for event, raw in await stored_samples(js, settings.stream_name, sub.event_types):
        prepared = rules.prepare(event, raw)
        if isinstance(prepared, RenderFailed):
            raise EventValidationError("template", f"fails on the event type {event.event_type}: {prepared.error}")
