"""Realistic events of every catalog type: long texts, emoji, markup, mentions, nested values."""

from __future__ import annotations

from typing import Any

from streams import Event, build_event

# Every hazard at once: markup of Slack and HTML, mentions, an emoji outside the BMP (two UTF-16 units).
HAZARDS = "<!channel> @everyone & <b>bold</b> 🚀 "
LONG = ("Steps to reproduce: open the login page, type a password, press enter. " + HAZARDS) * 150
TITLE = ("Login fails on Safari when the password contains an emoji 🚀 " * 8).strip()


def _current(entity: str, action: str) -> dict[str, Any]:
    common = {"id": f"{entity}-1", "description": LONG, "status": "in_progress", "priority": "high"}
    match entity:
        case "issue":
            return {
                **common,
                "title": TITLE,
                "assignee": {"id": "u-7", "name": "Bob Builder", "email": "bob@example.com"},
                "tags": [{"id": "t-1", "name": "bug"}, {"id": "t-2", "name": "needs-triage-" + "x" * 60}],
                "tag": "t-2",
                "project_name": "Turbo Web",
                "comment": {"content": LONG, "author_type": "user"},
                "blocked_by": ["issue-9"],
            }
        case "comment":
            return {"id": "comment-1", "issue_id": "issue-1", "content": LONG, "author_type": "user"}
        case "project" | "milestone" | "initiative":
            return {**common, "name": TITLE, "completion_percentage": 50.0, "due_date": "2026-12-31"}
        case "document":
            return {"id": "doc-1", "title": TITLE, "content": LONG}
        case "tag":
            return {"id": "t-1", "name": "bug", "color": "#ff0000", "tag": "t-1"}
        case "literature":
            return {"id": "lit-1", "title": TITLE, "url": "https://example.com/paper?x=1&y=<2>", "summary": LONG}
        case "terminal":
            return {"id": "term-1", "command": "rm -rf build && make " + "x" * 5000, "exit_code": 0}
        case "calendar":
            return {"id": "cal-1", "title": TITLE, "starts_at": "2026-12-01T10:00:00Z", "description": LONG}
        case _:
            return {"summary": LONG, "check": "webhook_subscription", "reason": LONG, "subscription_name": TITLE}


def realistic(event_type: str, *, actor_type: str = "user") -> Event:
    """An event of ``event_type`` with data as Turbo sends it, and then some."""
    entity, _, action = event_type.partition(".")
    changed = action in ("updated", "status_changed", "priority_changed", "assigned", "reopened", "closed")
    return build_event(
        event_type=event_type,
        entity_id=f"{entity}-1",
        data={
            "current": _current(entity, action),
            "previous": {"status": "open", "priority": "low", "description": "short"} if changed else None,
            "changes": ["status", "priority", "description"] if changed else [],
        },
        context={"project_id": "project-1", "issue_id": "issue-1"} if entity in ("issue", "comment") else {},
        actor={"type": actor_type, "name": "ada@example.com" if actor_type == "user" else "claude"},
    )
