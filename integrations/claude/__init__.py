"""Claude: the renderer (the envelope plus ``prompt_context``) and, in :mod:`integrations.claude.server`,
the receiving aiohttp server (``turbohooks claude-server``), which a worker never imports."""

from __future__ import annotations

from ._integration import (
    CLAUDE_ACTOR,
    ClaudeConfig,
    ClaudeIntegration,
    issue_id_of,
    prompt_context,
    reply_event,
    wants,
)

__all__ = ("CLAUDE_ACTOR", "ClaudeConfig", "ClaudeIntegration", "issue_id_of", "prompt_context", "reply_event", "wants")
