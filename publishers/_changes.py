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

import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
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
)

if TYPE_CHECKING:
    from ._publisher import PublishAck

__all__ = ("CLOSED_STATUS", "SupportsEmitMany", "derive_events", "emit_change", "mentions")

CLOSED_STATUS: Final = "closed"
"""The issue status that means closed (the design's ``open → … → closed``)."""
_ARCHIVED: Final = "archived"
_COMPLETED: Final = "completed"
_COMPLETION_THRESHOLDS: Final = (25, 50, 75, 100)
_PROGRESS_STEP: Final = 10
_DOCUMENT_LINKS: Final = ("project_id", "issue_id", "milestone_id", "initiative_id")

# The context field naming an entity of each type (for events about another entity).
_CONTEXT_FIELD: Final = {
    "project": "project_id",
    "issue": "issue_id",
    "milestone": "milestone_id",
    "initiative": "initiative_id",
    "comment": "comment_id",
    "document": "document_id",
    "tag": "tag_id",
    "literature": "literature_id",
    "terminal": "terminal_session_id",
    "calendar": "calendar_event_id",
}
# The event that says an entity appeared, where it is not "<entity>.created".
_CREATION_EVENT: Final = {
    "calendar": "calendar.event_created",
    "literature": "literature.fetched",
    "terminal": "terminal.session_started",
}

# An @mention starts a word (so e-mail addresses are not mentions) and does not end with a dot.
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)")

_encoder: Final = msgspec.json.Encoder()


class SupportsEmitMany(Protocol):
    """What :func:`emit_change` needs of a publisher (``EventPublisher``, or a fake in tests)."""

    async def emit_many(self, events: Iterable[Event]) -> list[PublishAck]: ...


def mentions(text: object) -> list[str]:
    """The @mentioned names of ``text``, in order, each once (case-insensitively)."""
    if not isinstance(text, str):
        return []
    seen: dict[str, str] = {}
    for name in _MENTION.findall(text):
        seen.setdefault(name.lower(), name)
    return list(seen.values())


class _Derived(msgspec.Struct, frozen=True, kw_only=True):
    event_type: str
    key: str
    """Tells apart several derived events of one type (one per tag, per mention)."""
    changes: tuple[str, ...]
    entity_id: str | None = None
    """None: the change's entity."""
    current: dict[str, Any] | None = None
    """None: the entity's current state."""
    context: dict[str, str] | None = None
    """Context fields set on top of the change's context."""


class _Change(msgspec.Struct, frozen=True, kw_only=True):
    entity_type: str
    entity_id: str
    previous: dict[str, Any]
    current: dict[str, Any]
    created: bool

    def before(self, field: str) -> Any:
        return self.previous.get(field)

    def after(self, field: str) -> Any:
        return self.current.get(field)

    def changed(self, field: str) -> bool:
        """Whether an update changed ``field`` (a creation changes nothing)."""
        return not self.created and field in self.current and self.before(field) != self.after(field)

    def set_to_new(self, field: str) -> bool:
        """Whether ``field`` now holds a value it did not hold before (on creation: holds one)."""
        value = self.after(field)
        return field in self.current and _present(value) and value != self.before(field)

    def with_(self, **extra: Any) -> dict[str, Any]:
        return {**self.current, **extra}


def _present(value: object) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _truthy_flag(change: _Change, names: tuple[str, ...]) -> bool:
    """Whether the first of ``names`` present in ``current`` went from false to true."""
    for name in names:
        if name in change.current:
            return change.after(name) is True and change.before(name) is not True
    return False


def _ids(value: object) -> list[str]:
    """Ids of a list of ids or of objects with an ``id`` (or ``name``), in order, each once."""
    if not isinstance(value, list):
        return []
    found: dict[str, None] = {}
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("id") if item.get("id") is not None else item.get("name")
        if isinstance(item, str | int) and not isinstance(item, bool) and str(item):
            found.setdefault(str(item))
    return list(found)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# -- rules: each returns the derived events one trigger produces -------------------


def _status_changed(c: _Change) -> list[_Derived]:
    if c.entity_type in ("project", "issue", "milestone", "initiative") and c.changed("status"):
        return [_Derived(event_type=f"{c.entity_type}.status_changed", key="", changes=("status",))]
    return []


def _issue_closed_reopened(c: _Change) -> list[_Derived]:
    if c.entity_type != "issue" or not c.changed("status"):
        return []
    if c.after("status") == CLOSED_STATUS:
        return [_Derived(event_type="issue.closed", key="", changes=("status",))]
    if c.before("status") == CLOSED_STATUS:
        return [_Derived(event_type="issue.reopened", key="", changes=("status",))]
    return []


def _project_archived(c: _Change) -> list[_Derived]:
    if c.entity_type != "project" or c.created:
        return []
    if c.changed("status") and c.after("status") == _ARCHIVED:
        return [_Derived(event_type="project.archived", key="", changes=("status",))]
    for flag in ("archived", "is_archived"):
        if _truthy_flag(c, (flag,)):
            return [_Derived(event_type="project.archived", key="", changes=(flag,))]
    return []


def _initiative_completed(c: _Change) -> list[_Derived]:
    if c.entity_type == "initiative" and c.changed("status") and c.after("status") == _COMPLETED:
        return [_Derived(event_type="initiative.completed", key="", changes=("status",))]
    return []


def _priority_changed(c: _Change) -> list[_Derived]:
    if c.entity_type == "issue" and c.changed("priority"):
        return [_Derived(event_type="issue.priority_changed", key="", changes=("priority",))]
    return []


def _assignment(c: _Change) -> list[_Derived]:
    if c.entity_type != "issue" or "assignee" not in c.current:
        return []
    if c.set_to_new("assignee"):
        return [_Derived(event_type="issue.assigned", key="", changes=("assignee",))]
    if not c.created and _present(c.before("assignee")) and not _present(c.after("assignee")):
        return [_Derived(event_type="issue.unassigned", key="", changes=("assignee",))]
    return []


def _tags(c: _Change) -> list[_Derived]:
    if "tags" not in c.current or c.entity_type not in _CONTEXT_FIELD:
        return []
    before, after = _ids(c.before("tags")), _ids(c.after("tags"))
    where = {_CONTEXT_FIELD[c.entity_type]: c.entity_id}
    derived: list[_Derived] = []
    for tag in (t for t in after if t not in before):
        if c.entity_type == "issue":
            derived.append(_Derived(event_type="issue.tagged", key=tag, changes=("tags",), current=c.with_(tag=tag)))
        derived.append(_tag_event("tag.applied", tag, c, where))
    if not c.created:
        derived.extend(_tag_event("tag.removed", tag, c, where) for tag in before if tag not in after)
    return derived


def _tag_event(event_type: str, tag: str, c: _Change, where: dict[str, str]) -> _Derived:
    return _Derived(
        event_type=event_type,
        key=tag,
        changes=("tags",),
        entity_id=tag,
        current={"tag": tag, "entity_type": c.entity_type, "entity_id": c.entity_id},
        context={**where, "tag_id": tag},
    )


def _blocking(c: _Change) -> list[_Derived]:
    if c.entity_type != "issue" or "blocked_by" not in c.current:
        return []
    before, after = _ids(c.before("blocked_by")), _ids(c.after("blocked_by"))
    derived = [
        _Derived(event_type="issue.blocked", key=b, changes=("blocked_by",), current=c.with_(blocker=b))
        for b in after
        if b not in before
    ]
    if not c.created and before and not after:
        derived.append(_Derived(event_type="issue.unblocked", key="", changes=("blocked_by",)))
    return derived


def _links(c: _Change) -> list[_Derived]:
    if c.entity_type != "issue":
        return []
    derived: list[_Derived] = []
    if c.set_to_new("milestone_id"):
        milestone = str(c.after("milestone_id"))
        derived.append(
            _Derived(
                event_type="issue.linked_to_milestone",
                key=milestone,
                changes=("milestone_id",),
                context={"milestone_id": milestone},
            )
        )
    if c.set_to_new("initiative_id"):
        initiative = str(c.after("initiative_id"))
        derived.append(
            _Derived(
                event_type="issue.linked_to_initiative",
                key=initiative,
                changes=("initiative_id",),
                context={"initiative_id": initiative},
            )
        )
        derived.append(
            _Derived(
                event_type="initiative.issue_added",
                key=initiative,
                changes=("initiative_id",),
                entity_id=initiative,
                current={"issue_id": c.entity_id, "issue": c.current},
                context={"issue_id": c.entity_id, "initiative_id": initiative},
            )
        )
    return derived


def _completion(c: _Change) -> list[_Derived]:
    if c.entity_type not in ("project", "milestone") or not c.changed("completion_percentage"):
        return []
    before, after = _number(c.before("completion_percentage")), _number(c.after("completion_percentage"))
    if before is None or after is None:
        return []
    if c.entity_type == "project":
        return [
            _Derived(
                event_type="project.completion_milestone",
                key=str(t),
                changes=("completion_percentage",),
                current=c.with_(completion_milestone=t),
            )
            for t in _COMPLETION_THRESHOLDS
            if before < t <= after
        ]

    def band(value: float) -> int:
        return int(min(max(value, 0.0), 100.0) // _PROGRESS_STEP) * _PROGRESS_STEP

    if band(before) == band(after):
        return []
    return [
        _Derived(
            event_type="milestone.progress_updated",
            key=str(band(after)),
            changes=("completion_percentage",),
            current=c.with_(progress_step=band(after)),
        )
    ]


def _document_linked(c: _Change) -> list[_Derived]:
    if c.entity_type != "document":
        return []
    derived: list[_Derived] = []
    for field in _DOCUMENT_LINKS:
        if c.set_to_new(field):
            target = str(c.after(field))
            kind = field.removesuffix("_id")
            derived.append(
                _Derived(
                    event_type="document.linked",
                    key=f"{kind}:{target}",
                    changes=(field,),
                    current=c.with_(linked_to={"entity_type": kind, "entity_id": target}),
                    context={field: target},
                )
            )
    return derived


def _mentions(c: _Change) -> list[_Derived]:
    if c.entity_type != "comment" or "content" not in c.current:
        return []
    already = {name.lower() for name in mentions(c.before("content"))}
    return [
        _Derived(
            event_type="comment.mention",
            key=name.lower(),
            changes=("content",),
            current=c.with_(mentioned=name),
        )
        for name in mentions(c.after("content"))
        if name.lower() not in already
    ]


def _literature(c: _Change) -> list[_Derived]:
    if c.entity_type != "literature" or c.created:
        return []
    derived: list[_Derived] = []
    for event_type, flags in (
        ("literature.marked_read", ("is_read", "read")),
        ("literature.favorited", ("is_favorite", "favorite")),
    ):
        if _truthy_flag(c, flags):
            field = next(f for f in flags if f in c.current)
            derived.append(_Derived(event_type=event_type, key="", changes=(field,)))
    return derived


_RULES: Final[tuple[Callable[[_Change], list[_Derived]], ...]] = (
    _status_changed,
    _issue_closed_reopened,
    _project_archived,
    _initiative_completed,
    _priority_changed,
    _assignment,
    _tags,
    _blocking,
    _links,
    _completion,
    _document_linked,
    _mentions,
    _literature,
)


def _state(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise EventValidationError(field, f"must be a JSON object, got {type(value).__name__}")
    try:
        # As stored: datetimes become ISO strings, so comparisons see what subscribers see.
        state: dict[str, Any] = msgspec.json.decode(_encoder.encode(dict(value)))
    except (TypeError, msgspec.EncodeError) as exc:
        raise EventValidationError(field, f"is not JSON-serialisable: {exc}") from exc
    return state


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
) -> list[Event]:
    """The events one change publishes: ``<entity>.updated`` (or the creation event) first, then derived ones.

    Returns ``[]`` when nothing changed. ``event_id`` is the id of the first
    event (random by default); the derived events' ids follow from it. Raises
    :class:`~streams.EventValidationError` naming the bad input.
    """
    if entity_type not in ENTITY_TYPES or entity_type not in _CONTEXT_FIELD:
        raise EventValidationError("entity_type", f"{entity_type!r} is not an entity type whose changes can be derived")
    created = previous is None
    change = _Change(
        entity_type=entity_type,
        entity_id=str(entity_id),
        previous={} if previous is None else _state(previous, "previous"),
        current=_state(current, "current"),
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
    )
    events = [primary] if publish_primary else []
    causation = primary.event_id if publish_primary else None
    for rule in _RULES:
        for derived in rule(change):
            events.append(_build(derived, change, primary, causation))
    return events


def _some_type_of(entity_type: str) -> str:
    return next(t for t, info in EVENT_CATALOG.items() if info.entity_type == entity_type)


def _build(derived: _Derived, change: _Change, primary: Event, causation: uuid.UUID | None) -> Event:
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
) -> list[PublishAck]:
    """Publish a change and every event it implies, together; ``[]`` when nothing changed.

    ``event_id`` (random by default) names the change: publishing the same change
    again with it is stored once, derived events included. See :func:`derive_events`
    and the list of this module for what is derived.
    """
    events = derive_events(
        entity_type, entity_id, previous=previous, current=current, actor=actor, context=context, event_id=event_id
    )
    if not events:
        return []
    return await publisher.emit_many(events)
