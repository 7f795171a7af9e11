"""Events as people read them: what happened, to what, by whom, with a link, within a service's limits.

:func:`describe` reads an event once into :class:`Facts` (headline, title,
status, priority, assignee, project, link, changes); each chat or mail
integration lays those out its own way. Turbo's entities carry their state in
``data.current`` with the field names of the design document (``title`` or
``name``, ``description`` or ``content``, ``status``, ``priority``,
``assignee``, ``tags``); anything missing is simply left out.

Limits of chat services are counted in UTF-16 code units, which is what their
JavaScript-side validators count and never fewer than Python's code points.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import msgspec

from streams import Event

__all__ = (
    "ELLIPSIS",
    "Change",
    "Facts",
    "describe",
    "fact_fields",
    "plain_text",
    "priority_colour",
    "text_of",
    "truncate",
    "utf16_len",
)

ELLIPSIS: Final = "…"

_ENTITY_LABELS: Final = {
    "project": "Project",
    "issue": "Issue",
    "milestone": "Milestone",
    "initiative": "Initiative",
    "comment": "Comment",
    "document": "Document",
    "tag": "Tag",
    "literature": "Literature",
    "terminal": "Terminal",
    "calendar": "Calendar",
    "system": "System",
}
_HEADLINES: Final = {
    "comment.mention": "Mentioned in a comment",
    "project.completion_milestone": "Project completion milestone",
    "system.daily_digest": "Daily digest",
    "system.weekly_report": "Weekly report",
    "system.backup_completed": "Backup completed",
    "system.health_check_failed": "Health check failed",
    "system.health_check_recovered": "Health check recovered",
    "system.ai_analysis_complete": "AI analysis complete",
}
_TITLE_KEYS: Final = ("title", "name", "subject", "command", "tag", "subscription_name", "check")
_TEXT_KEYS: Final = ("description", "content", "body", "summary", "message", "text", "reason", "output")
_LINK_KEYS: Final = ("url", "html_url", "web_url", "link")
_ASSIGNEE_KEYS: Final = ("assignee", "assigned_to", "assignee_name", "assignee_email")
_NAME_KEYS: Final = ("name", "title", "display_name", "login", "email", "id")

_COLOURS: Final = {
    "critical": 0xD92D20,
    "urgent": 0xD92D20,
    "blocker": 0xD92D20,
    "high": 0xF79009,
    "medium": 0xEAAA08,
    "normal": 0xEAAA08,
    "low": 0x12B76A,
}
_NEUTRAL: Final = 0x667085
_DERIVED_TITLE: Final = 120
_ALERT_TYPES: Final = frozenset({"system.health_check_failed", "issue.overdue", "milestone.overdue", "issue.blocked"})


class Change(msgspec.Struct, frozen=True):
    """One changed field: its name, the value before and after, as text."""

    field: str
    before: str
    after: str


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """One event as a person reads it; empty strings and ``None`` mean "not known"."""

    event_id: str
    event_type: str
    timestamp: datetime
    headline: str
    """What happened: ``Issue created``."""
    title: str
    """What it happened to: the entity's title or name, else ``Issue 42``."""
    summary: str
    """One line: ``Issue created by ada@example.com: Bug in login``."""
    description: str
    actor: str
    actor_type: str
    status: str | None
    priority: str | None
    assignee: str | None
    project: str | None
    link: str | None
    changes: tuple[Change, ...]


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: an emoji outside the BMP counts two."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _cut(text: str, units: int) -> str:
    total = 0
    for index, ch in enumerate(text):
        total += 2 if ord(ch) > 0xFFFF else 1
        if total > units:
            return text[:index]
    return text


def truncate(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-16 code units, ending with ``…`` when it had to be cut."""
    if utf16_len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return _cut(text, limit - 1).rstrip() + ELLIPSIS


def text_of(value: object) -> str:
    """Any JSON value as short human text: a name for an object, a comma list for a list."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        for key in _NAME_KEYS:
            if (inner := text_of(value.get(key))) != "":
                return inner
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, Sequence):
        return ", ".join(t for t in (text_of(item) for item in value) if t)
    return str(value)


def _first(current: Mapping[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        if (text := text_of(current.get(key))) != "":
            return text
    return ""


def _headline(event: Event) -> str:
    if event.event_type in _HEADLINES:
        return _HEADLINES[event.event_type]
    label = _ENTITY_LABELS.get(event.entity_type, event.entity_type.replace("_", " ").capitalize())
    return f"{label} {event.action.replace('_', ' ')}".strip()


def _link(event: Event, template: str | None) -> str | None:
    current = event.data.current
    for key in _LINK_KEYS:
        value = current.get(key)
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            return value
    if not template:
        return None
    values = {name: "" for name in ("project_id", "milestone_id", "initiative_id", "issue_id")}
    values.update({k: v for k, v in msgspec.structs.asdict(event.context).items() if v is not None})
    values.update(
        entity_type=event.entity_type,
        entity_id=event.entity_id,
        event_type=event.event_type,
        event_id=str(event.event_id),
    )
    # Ids come from events: quoted so that one cannot change the link's path or host.
    return template.format_map({k: quote(str(v), safe="") for k, v in values.items()})


def _changes(event: Event) -> tuple[Change, ...]:
    current, previous = event.data.current, event.data.previous or {}
    return tuple(
        Change(name, text_of(previous.get(name)) or "—", text_of(current.get(name)) or "—")
        for name in event.data.changes
    )


def describe(event: Event, *, link_template: str | None = None) -> Facts:
    """Read ``event`` into :class:`Facts`; ``link_template`` builds the link when the entity has no URL."""
    current = event.data.current
    headline = _headline(event)
    title = _first(current, _TITLE_KEYS)
    description = _first(current, _TEXT_KEYS)
    if not title and description:
        # A comment has no title: its first line stands in.
        title = truncate(description.splitlines()[0].strip(), _DERIVED_TITLE)
    if not title:
        title = f"{_ENTITY_LABELS.get(event.entity_type, event.entity_type)} {event.entity_id}"
    actor = event.actor.name or event.actor.type
    project = _first(current, ("project_name", "project")) or event.context.project_id
    return Facts(
        event_id=str(event.event_id),
        event_type=event.event_type,
        timestamp=event.timestamp,
        headline=headline,
        title=title,
        summary=f"{headline} by {actor}: {title}",
        description=description if description != title else "",
        actor=actor,
        actor_type=event.actor.type,
        status=text_of(current.get("status")) or None,
        priority=text_of(current.get("priority")) or None,
        assignee=_first(current, _ASSIGNEE_KEYS) or None,
        project=project or None,
        link=_link(event, link_template),
        changes=_changes(event),
    )


def fact_fields(facts: Facts) -> list[tuple[str, str]]:
    """The short facts worth a field of their own, known ones only: status, priority, assignee, project, who."""
    fields = [
        ("Status", facts.status),
        ("Priority", facts.priority),
        ("Assignee", facts.assignee),
        ("Project", facts.project),
        ("By", f"{facts.actor} (AI)" if facts.actor_type == "ai" else facts.actor),
    ]
    return [(name, value) for name, value in fields if value]


def priority_colour(facts: Facts) -> int:
    """An RGB colour for the event: red for critical (and alerts), orange high, yellow medium, green low."""
    if facts.event_type in _ALERT_TYPES:
        return _COLOURS["critical"]
    return _COLOURS.get((facts.priority or "").lower(), _NEUTRAL)


def plain_text(facts: Facts) -> str:
    """The event as a few lines of plain text (mail bodies, prompts, Zapier's ``summary``)."""
    lines = [facts.summary, ""]
    lines.extend(f"{name}: {value}" for name, value in fact_fields(facts))
    if facts.changes:
        lines.append("Changes: " + "; ".join(f"{c.field}: {c.before} → {c.after}" for c in facts.changes))
    if facts.description:
        lines += ["", facts.description]
    if facts.link:
        lines += ["", facts.link]
    lines += ["", f"{facts.event_type} · {facts.timestamp:%Y-%m-%d %H:%M:%S} UTC · event {facts.event_id}"]
    return "\n".join(lines)
