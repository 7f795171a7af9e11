"""The rules of change detection: which field's change derives which event (see :mod:`publishers._changes`).

Each rule takes the :class:`Change` (the states before and after) and returns the
:class:`Derived` events it implies; :data:`RULES` lists them in the order their
events are published.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

__all__ = ("CLOSED_STATUS", "CONTEXT_FIELD", "RULES", "Change", "Derived", "mentions")

CLOSED_STATUS: Final = "closed"
"""The issue status that means closed (the design's ``open → … → closed``)."""
_ARCHIVED: Final = "archived"
_COMPLETED: Final = "completed"
_COMPLETION_THRESHOLDS: Final = (25, 50, 75, 100)
_PROGRESS_STEP: Final = 10
_DOCUMENT_LINKS: Final = ("project_id", "issue_id", "milestone_id", "initiative_id")

# The context field naming an entity of each type (for events about another entity).
CONTEXT_FIELD: Final = {
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
# An @mention starts a word (so e-mail addresses are not mentions) and does not end with a dot.
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)")


def mentions(text: object) -> list[str]:
    """The @mentioned names of ``text``, in order, each once (case-insensitively)."""
    if not isinstance(text, str):
        return []
    seen: dict[str, str] = {}
    for name in _MENTION.findall(text):
        seen.setdefault(name.lower(), name)
    return list(seen.values())


class Derived(msgspec.Struct, frozen=True, kw_only=True):
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


class Change(msgspec.Struct, frozen=True, kw_only=True):
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


def _truthy_flag(change: Change, names: tuple[str, ...]) -> bool:
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


def _status_changed(c: Change) -> list[Derived]:
    if c.entity_type in ("project", "issue", "milestone", "initiative") and c.changed("status"):
        return [Derived(event_type=f"{c.entity_type}.status_changed", key="", changes=("status",))]
    return []


def _issue_closed_reopened(c: Change) -> list[Derived]:
    if c.entity_type != "issue" or not c.changed("status"):
        return []
    if c.after("status") == CLOSED_STATUS:
        return [Derived(event_type="issue.closed", key="", changes=("status",))]
    if c.before("status") == CLOSED_STATUS:
        return [Derived(event_type="issue.reopened", key="", changes=("status",))]
    return []


def _project_archived(c: Change) -> list[Derived]:
    if c.entity_type != "project" or c.created:
        return []
    if c.changed("status") and c.after("status") == _ARCHIVED:
        return [Derived(event_type="project.archived", key="", changes=("status",))]
    for flag in ("archived", "is_archived"):
        if _truthy_flag(c, (flag,)):
            return [Derived(event_type="project.archived", key="", changes=(flag,))]
    return []


def _initiative_completed(c: Change) -> list[Derived]:
    if c.entity_type == "initiative" and c.changed("status") and c.after("status") == _COMPLETED:
        return [Derived(event_type="initiative.completed", key="", changes=("status",))]
    return []


def _priority_changed(c: Change) -> list[Derived]:
    if c.entity_type == "issue" and c.changed("priority"):
        return [Derived(event_type="issue.priority_changed", key="", changes=("priority",))]
    return []


def _assignment(c: Change) -> list[Derived]:
    if c.entity_type != "issue" or "assignee" not in c.current:
        return []
    if c.set_to_new("assignee"):
        return [Derived(event_type="issue.assigned", key="", changes=("assignee",))]
    if not c.created and _present(c.before("assignee")) and not _present(c.after("assignee")):
        return [Derived(event_type="issue.unassigned", key="", changes=("assignee",))]
    return []


def _tags(c: Change) -> list[Derived]:
    if "tags" not in c.current or c.entity_type not in CONTEXT_FIELD:
        return []
    before, after = _ids(c.before("tags")), _ids(c.after("tags"))
    where = {CONTEXT_FIELD[c.entity_type]: c.entity_id}
    derived: list[Derived] = []
    for tag in (t for t in after if t not in before):
        if c.entity_type == "issue":
            derived.append(Derived(event_type="issue.tagged", key=tag, changes=("tags",), current=c.with_(tag=tag)))
        derived.append(_tag_event("tag.applied", tag, c, where))
    if not c.created:
        derived.extend(_tag_event("tag.removed", tag, c, where) for tag in before if tag not in after)
    return derived


def _tag_event(event_type: str, tag: str, c: Change, where: dict[str, str]) -> Derived:
    return Derived(
        event_type=event_type,
        key=tag,
        changes=("tags",),
        entity_id=tag,
        current={"tag": tag, "entity_type": c.entity_type, "entity_id": c.entity_id},
        context={**where, "tag_id": tag},
    )


def _blocking(c: Change) -> list[Derived]:
    if c.entity_type != "issue" or "blocked_by" not in c.current:
        return []
    before, after = _ids(c.before("blocked_by")), _ids(c.after("blocked_by"))
    derived = [
        Derived(event_type="issue.blocked", key=b, changes=("blocked_by",), current=c.with_(blocker=b))
        for b in after
        if b not in before
    ]
    if not c.created and before and not after:
        derived.append(Derived(event_type="issue.unblocked", key="", changes=("blocked_by",)))
    return derived


def _links(c: Change) -> list[Derived]:
    if c.entity_type != "issue":
        return []
    derived: list[Derived] = []
    if c.set_to_new("milestone_id"):
        milestone = str(c.after("milestone_id"))
        derived.append(
            Derived(
                event_type="issue.linked_to_milestone",
                key=milestone,
                changes=("milestone_id",),
                context={"milestone_id": milestone},
            )
        )
    if c.set_to_new("initiative_id"):
        initiative = str(c.after("initiative_id"))
        derived.append(
            Derived(
                event_type="issue.linked_to_initiative",
                key=initiative,
                changes=("initiative_id",),
                context={"initiative_id": initiative},
            )
        )
        derived.append(
            Derived(
                event_type="initiative.issue_added",
                key=initiative,
                changes=("initiative_id",),
                entity_id=initiative,
                current={"issue_id": c.entity_id, "issue": c.current},
                context={"issue_id": c.entity_id, "initiative_id": initiative},
            )
        )
    return derived


def _completion(c: Change) -> list[Derived]:
    if c.entity_type not in ("project", "milestone") or not c.changed("completion_percentage"):
        return []
    before, after = _number(c.before("completion_percentage")), _number(c.after("completion_percentage"))
    if before is None or after is None:
        return []
    if c.entity_type == "project":
        return [
            Derived(
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
        Derived(
            event_type="milestone.progress_updated",
            key=str(band(after)),
            changes=("completion_percentage",),
            current=c.with_(progress_step=band(after)),
        )
    ]


def _document_linked(c: Change) -> list[Derived]:
    if c.entity_type != "document":
        return []
    derived: list[Derived] = []
    for field in _DOCUMENT_LINKS:
        if c.set_to_new(field):
            target = str(c.after(field))
            kind = field.removesuffix("_id")
            derived.append(
                Derived(
                    event_type="document.linked",
                    key=f"{kind}:{target}",
                    changes=(field,),
                    current=c.with_(linked_to={"entity_type": kind, "entity_id": target}),
                    context={field: target},
                )
            )
    return derived


def _mentions(c: Change) -> list[Derived]:
    if c.entity_type != "comment" or "content" not in c.current:
        return []
    already = {name.lower() for name in mentions(c.before("content"))}
    return [
        Derived(
            event_type="comment.mention",
            key=name.lower(),
            changes=("content",),
            current=c.with_(mentioned=name),
        )
        for name in mentions(c.after("content"))
        if name.lower() not in already
    ]


def _literature(c: Change) -> list[Derived]:
    if c.entity_type != "literature" or c.created:
        return []
    derived: list[Derived] = []
    for event_type, flags in (
        ("literature.marked_read", ("is_read", "read")),
        ("literature.favorited", ("is_favorite", "favorite")),
    ):
        if _truthy_flag(c, flags):
            field = next(f for f in flags if f in c.current)
            derived.append(Derived(event_type=event_type, key="", changes=(field,)))
    return derived


RULES: Final[tuple[Callable[[Change], list[Derived]], ...]] = (
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
