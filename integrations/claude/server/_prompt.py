"""The prompt of one run: what happened, the comment, the issue, and what to do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams import Event

from ...core import describe, plain_text
from .._integration import issue_id_of

__all__ = ("build_prompt",)


def build_prompt(event: Event, context: Mapping[str, Any], issue_context: str | None) -> str:
    """The prompt of one run: what happened, the comment, the issue, and what to do."""
    facts = describe(event)
    issue_id = context.get("issue_id") or issue_id_of(event)
    parts = [
        "You are Claude Code, called by Turbo (the project tracker) through a webhook.",
        "",
        plain_text(facts),
    ]
    comment = context.get("comment")
    if not isinstance(comment, str) and event.entity_type == "comment":
        comment = event.data.current.get("content")  # sent without prompt_context (an older sender)
    if isinstance(comment, str) and comment.strip():
        parts += ["", "The comment:", "<comment>", comment.strip(), "</comment>"]
    if issue_context:
        parts += ["", f"Issue {issue_id} as Turbo has it now:", "<issue>", issue_context, "</issue>"]
    instructions = context.get("instructions")
    if isinstance(instructions, str) and instructions.strip():
        parts += ["", instructions.strip()]
    if issue_id:
        parts += [
            "",
            f"Read issue {issue_id} and its comments, do what is asked if you can, and answer with one comment on "
            f"issue {issue_id}. Write the answer as your final output.",
        ]
    return "\n".join(parts) + "\n"
