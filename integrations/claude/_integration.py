"""Claude: wake the Claude Code agent on a user's comment (and other chosen events).

The sending side of the design's first webhook. A ``comment.created`` written
by a user (``actor.type == "user"``) is POSTed, signed, to the subscription's
URL, where ``turbohooks claude-server`` runs Claude Code on it; so is any event
type listed in the config's ``events``. Nothing is ever sent for an event
whose actor is an AI: the AI's own reply comment must not wake it again.

The body is the envelope with one more key, ``prompt_context``: what the
receiver needs to build a prompt without a second lookup (the issue, the
comment text, a one-line summary, a link) and how to reply (:func:`reply_event`
builds the reply correctly: ``actor.type = "ai"``, ``causation_id`` = the
triggering event).
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec

from streams import Event, EventValidationError, build_event, match_event_types, normalize_patterns

from ..core import CONFIG_FIELD, JsonIntegration, describe, truncate

__all__ = (
    "CLAUDE_ACTOR",
    "ClaudeConfig",
    "ClaudeIntegration",
    "issue_id_of",
    "prompt_context",
    "reply_event",
    "wants",
)

CLAUDE_ACTOR: Final = {"type": "ai", "name": "claude"}
"""The actor of whatever the agent publishes: ``ai`` is what stops the loop."""
REPLY_NAMESPACE: Final = uuid.UUID("6f1c2a4e-93b1-4d0c-a7a4-3c5e2f8d9b10")
_MAX_INSTRUCTIONS: Final = 4000
_MAX_COMMENT: Final = 20000


class ClaudeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A Claude subscription's ``integration_config``."""

    events: list[str] = msgspec.field(default_factory=list)
    """Event type patterns sent besides users' ``comment.created`` (``issue.created`` for AI triage)."""
    instructions: str | None = None
    """Extra instructions passed along in ``prompt_context.instructions`` (at most 4,000 characters)."""
    link_template: str | None = None
    """Link to the entity in Turbo, passed along as ``prompt_context.link``."""


def wants(event: Event, config: ClaudeConfig) -> bool:
    """Whether ``event`` goes to Claude: never from an AI; users' comments; the configured types."""
    if event.actor.type == "ai":
        return False
    if event.event_type == "comment.created" and event.actor.type == "user":
        return True
    return bool(config.events) and event.event_type in match_event_types(config.events)


def issue_id_of(event: Event) -> str | None:
    """The issue an event is about or under: the entity itself, ``context.issue_id``, or ``data.current.issue_id``."""
    if event.entity_type == "issue":
        return event.entity_id
    if event.context.issue_id:
        return event.context.issue_id
    value = event.data.current.get("issue_id")
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def prompt_context(event: Event, config: ClaudeConfig) -> dict[str, Any]:
    """What the receiver needs for a prompt and a correct reply."""
    facts = describe(event, link_template=config.link_template)
    current = event.data.current
    comment = current.get("content") if event.entity_type == "comment" else None
    context: dict[str, Any] = {
        "summary": facts.summary,
        "issue_id": issue_id_of(event),
        "project_id": event.context.project_id,
        "title": facts.title,
        "link": facts.link,
        "comment": truncate(comment, _MAX_COMMENT) if isinstance(comment, str) else None,
        "reply": {"actor": dict(CLAUDE_ACTOR), "causation_id": str(event.event_id)},
    }
    if config.instructions:
        context["instructions"] = config.instructions
    return {k: v for k, v in context.items() if v is not None}


def reply_event(
    trigger: Event,
    content: str,
    *,
    event_type: str = "comment.created",
    actor_name: str = "claude",
    comment_id: str | None = None,
    causation: str | None = None,
) -> Event:
    """The AI's reply comment to ``trigger``, built so that it never triggers Claude again.

    ``actor.type`` is ``ai``; ``causation_id`` is the triggering event; the
    event id is derived from the trigger, so publishing the reply twice (a
    retried run) stores it once within the stream's duplicate window. ``causation``:
    the delivery's ``Turbohooks-Causation`` header, so that the reply carries the
    causation chain (never delivered back to the Claude subscription; a loop stops).
    """
    issue_id = issue_id_of(trigger)
    if issue_id is None:
        raise EventValidationError("context.issue_id", "the triggering event names no issue to reply on")
    event_id = uuid.uuid5(REPLY_NAMESPACE, f"{trigger.event_id}:{event_type}")
    comment = comment_id or str(event_id)
    return build_event(
        event_type=event_type,
        entity_id=comment if event_type.startswith("comment.") else issue_id,
        data={
            "current": {
                "id": comment,
                "issue_id": issue_id,
                "content": content,
                "author_type": "ai",
                "author_name": actor_name,
            }
        },
        context={"issue_id": issue_id, "project_id": trigger.context.project_id, "comment_id": comment},
        actor={"type": "ai", "name": actor_name},
        event_id=event_id,
        causation_id=trigger.event_id,
        causation=causation,
    )


class ClaudeIntegration(JsonIntegration[ClaudeConfig]):
    """The envelope plus ``prompt_context``, signed, for ``turbohooks claude-server``."""

    name: str = "claude"
    config_type = ClaudeConfig

    def check(self, config: ClaudeConfig) -> ClaudeConfig:
        if config.events:
            config.events = normalize_patterns(config.events, field=f"{CONFIG_FIELD}.events")
        if config.instructions is not None and len(config.instructions) > _MAX_INSTRUCTIONS:
            raise EventValidationError(f"{CONFIG_FIELD}.instructions", f"is longer than {_MAX_INSTRUCTIONS} characters")
        return config

    def body(self, event: Event, raw: bytes, config: ClaudeConfig) -> dict[str, Any] | None:
        if not wants(event, config):
            return None
        envelope: dict[str, Any] = msgspec.json.decode(raw)
        envelope["prompt_context"] = prompt_context(event, config)
        return envelope
