"""Change detection: one change of an entity becomes ``<entity>.updated`` plus the events it implies.

Turbo reports a change with the entity's state before and after::

    await publisher.emit_change("issue", "42", previous=before, current=after, actor=..., context=...)

:func:`derive_events` (pure) compares the two states and builds the batch;
:func:`emit_change` publishes it with ``emit_many``. ``previous=None`` means the
entity was just created: the batch then starts with its creation event
(``issue.created``, ``calendar.event_created``, ``literature.fetched``,
``terminal.session_started``) and holds only what a creation can imply (an
assignee, tags, blockers, links, @mentions), never a transition.

A field absent from ``current`` is taken as unchanged, so partial states work;
set it to ``null`` to clear it. Which field drives which derived event:

* ``status`` changed (project, issue, milestone, initiative): ``<entity>.status_changed``;
  an issue's becomes ``closed``: ``issue.closed``, leaves ``closed``: ``issue.reopened``;
  a project's becomes ``archived`` (or ``archived``/``is_archived`` becomes true):
  ``project.archived``; an initiative's becomes ``completed``: ``initiative.completed``.
* ``priority`` changed (issue): ``issue.priority_changed``.
* ``assignee`` set or changed (issue): ``issue.assigned`` (a reassignment is one
  ``assigned``); cleared: ``issue.unassigned``.
* ``tags``, each tag added (any entity): ``issue.tagged`` (issues) and ``tag.applied``;
  each tag removed: ``tag.removed``. Tags are ids, or objects with an ``id`` (or ``name``).
* ``blocked_by``, each id added (issue): ``issue.blocked``; the list becomes empty:
  ``issue.unblocked`` (no blocker left).
* ``milestone_id`` set or changed (issue): ``issue.linked_to_milestone``;
  ``initiative_id``: ``issue.linked_to_initiative`` and ``initiative.issue_added``.
* ``completion_percentage`` (0-100) of a project crossing 25, 50, 75 or 100 upwards:
  ``project.completion_milestone``, one per threshold crossed (``completion_milestone``
  in ``current``); of a milestone entering another 10 % band, up or down:
  ``milestone.progress_updated`` (``progress_step`` in ``current``).
* ``project_id``, ``issue_id``, ``milestone_id`` or ``initiative_id`` of a document set
  or changed: ``document.linked``, one per new link (``linked_to`` in ``current``).
* ``content`` of a comment, each @mention not in the previous content:
  ``comment.mention`` (``mentioned`` in ``current``; e-mail addresses are not mentions).
* ``is_read``/``read`` of literature becomes true: ``literature.marked_read``;
  ``is_favorite``/``favorite``: ``literature.favorited``.

Derived events keep the change's entity id, actor and context (``tag.applied``
and ``tag.removed`` are about the tag, ``initiative.issue_added`` about the
initiative; their context names the other entity). Their ``data`` holds the
entity's current and previous state, ``changes`` only the fields that caused
them, and ``causation_id`` is the id of the ``<entity>.updated`` (or creation)
event. Their own ids are derived from that id, so re-publishing a change with
the same ``event_id`` is stored once, derived events included. Entities the
catalog has no ``updated`` event for (literature, tags, calendar events,
terminal sessions) publish only their derived events, without a causation id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from streams import (
    ENTITY_TYPES,
    EVENT_CATALOG,
    Actor,
    Event,
    EventContext,
    EventData,
    EventValidationError,
    build_event,
    json_object,
)

from ._rules import CLOSED_STATUS, CONTEXT_FIELD, RULES, Change, Derived, mentions

if TYPE_CHECKING:
    from ._publisher import PublishAck

__all__ = ("CLOSED_STATUS", "SupportsEmitMany", "derive_events", "emit_change", "mentions")

# The event that says an entity appeared, where it is not "<entity>.created".
_CREATION_EVENT: Final = {
    "calendar": "calendar.event_created",
    "literature": "literature.fetched",
    "terminal": "terminal.session_started",
}

_encoder: Final = msgspec.json.Encoder()


class SupportsEmitMany(Protocol):
    """What :func:`emit_change` needs of a publisher (``EventPublisher``, or a fake in tests)."""

    async def emit_many(self, events: Iterable[Event]) -> list[PublishAck]: ...


def derive_events(
    entity_type: str,
    entity_id: object,
    *,
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    actor: Actor | Mapping[str, Any] | None = None,
    context: EventContext | Mapping[str, Any] | None = None,
    event_id: uuid.UUID | str | None = None,
    timestamp: datetime | None = None,
    causation: str | None = None,
) -> list[Event]:
    """The events one change publishes: ``<entity>.updated`` (or the creation event) first, then derived ones.

    Returns ``[]`` when nothing changed. ``event_id`` is the id of the first
    event (random by default); the derived events' ids follow from it.
    ``causation``: the ``Turbohooks-Causation`` header of the delivery that made
    this change; every event of the change carries its chain (loop prevention).
    Raises :class:`~streams.EventValidationError` naming the bad input.
    """
    if entity_type not in ENTITY_TYPES or entity_type not in CONTEXT_FIELD:
        raise EventValidationError("entity_type", f"{entity_type!r} is not an entity type whose changes can be derived")
    created = previous is None
    change = Change(
        entity_type=entity_type,
        entity_id=str(entity_id),
        previous={} if previous is None else json_object(previous, "previous"),
        current=json_object(current, "current"),
        created=created,
    )
    if created:
        primary_type = _CREATION_EVENT.get(entity_type, f"{entity_type}.created")
        changes: list[str] = []
    else:
        primary_type = f"{entity_type}.updated"
        changes = [k for k, v in change.current.items() if k not in change.previous or change.previous[k] != v]
        if not changes:
            return []
    publish_primary = primary_type in EVENT_CATALOG
    # Built even when the catalog has no such event to publish: it checks entity id, actor and context once.
    primary = build_event(
        event_type=primary_type if publish_primary else _some_type_of(entity_type),
        entity_id=entity_id,
        data=EventData(current=change.current, previous=None if created else change.previous, changes=changes),
        context=context,
        actor=actor,
        event_id=event_id,
        timestamp=timestamp or datetime.now(UTC),
        causation=causation,
    )
    events = [primary] if publish_primary else []
    cited = primary.event_id if publish_primary else None
    for rule in RULES:
        for derived in rule(change):
            events.append(_build(derived, change, primary, cited))
    return events


def _some_type_of(entity_type: str) -> str:
    return next(t for t, info in EVENT_CATALOG.items() if info.entity_type == entity_type)


def _build(derived: Derived, change: Change, primary: Event, causation: uuid.UUID | None) -> Event:
    context = primary.context
    if derived.context:
        context = msgspec.structs.replace(context, **derived.context)
    current = change.current if derived.current is None else derived.current
    # An event about another entity (a tag, an initiative) has no previous state of its own.
    previous = None if change.created or derived.entity_id is not None else change.previous
    return Event(
        event_id=uuid.uuid5(primary.event_id, f"{derived.event_type}:{derived.key}"),
        event_type=derived.event_type,
        timestamp=primary.timestamp,
        entity_type=EVENT_CATALOG[derived.event_type].entity_type,
        entity_id=derived.entity_id or change.entity_id,
        action=EVENT_CATALOG[derived.event_type].action,
        actor=primary.actor,
        data=EventData(current=current, previous=previous, changes=list(derived.changes)),
        context=context,
        causation_id=causation,
        # The same change said another way: the same place in a causation chain as the primary.
        chain=primary.chain,
    )


async def emit_change(
    publisher: SupportsEmitMany,
    entity_type: str,
    entity_id: object,
    *,
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    actor: Actor | Mapping[str, Any] | None = None,
    context: EventContext | Mapping[str, Any] | None = None,
    event_id: uuid.UUID | str | None = None,
    causation: str | None = None,
) -> list[PublishAck]:
    """Publish a change and every event it implies, together; ``[]`` when nothing changed.

    ``event_id`` (random by default) names the change: publishing the same change
    again with it is stored once, derived events included. See :func:`derive_events`
    and the list of this module for what is derived.
    """
    events = derive_events(
        entity_type,
        entity_id,
        previous=previous,
        current=current,
        actor=actor,
        context=context,
        event_id=event_id,
        causation=causation,
    )
    if not events:
        return []
    return await publisher.emit_many(events)
