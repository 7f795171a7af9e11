"""Slack: a Block Kit message to an incoming webhook.

The message is a header (what happened), a section with the entity's title as a
link and its description, short fields (status, priority, assignee, project,
who, link), the changes of an update, and a context line (event type, time).
Everything is cut to Slack's limits: 150 characters of header, 3,000 of section
text, 10 fields of 2,000, 50 blocks.

Deliveries are not signed (``signs = False``): Slack verifies nothing, the
webhook URL itself is the credential, and signature headers would be noise.
A 429 answer's ``Retry-After`` is honoured; 404 ``no_service`` and 403 fail at
once; 410 ``channel_is_archived`` disables the subscription.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import msgspec

from streams import Event

from .core import ELLIPSIS, Facts, JsonIntegration, WebhookRule, describe, fact_fields, truncate, utf16_len

__all__ = ("SLACK_LIMITS", "SlackConfig", "SlackIntegration", "mrkdwn_escape")

SLACK_LIMITS: Final = {
    "blocks": 50,
    "header_text": 150,
    "section_text": 3000,
    "fields": 10,
    "field_text": 2000,
    "context_elements": 10,
    "text": 3000,
}
"""Slack's Block Kit limits this integration keeps to (``text`` is the notification fallback)."""

SLACK_HOSTS: Final = ("hooks.slack.com", "hooks.slack-gov.com")
_PATH: Final = re.compile(r"^/services/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/?$")
_EXAMPLE: Final = "https://hooks.slack.com/services/T000/B000/XXXX"
_MAX_LINKED_URL: Final = 1000
_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


class SlackConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A Slack subscription's ``integration_config``."""

    link_template: str | None = None
    """Link to the entity in Turbo when the event carries no URL: ``https://turbo.example.com/{entity_type}s/{entity_id}``."""


def mrkdwn_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to (``<!channel>`` stays text)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def _mrkdwn(text: str, limit: int) -> str:
    """Escaped mrkdwn within ``limit``; cut between characters, so no ``&amp;`` is split."""
    escaped = mrkdwn_escape(text)
    if utf16_len(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    used = 0
    for ch in text:
        piece = _ESCAPES.get(ch, ch)
        used += utf16_len(piece)
        if used > limit - 1:
            break
        pieces.append(piece)
    return "".join(pieces).rstrip() + ELLIPSIS


def _link(url: str, label: str, limit: int) -> str:
    """``<url|label>``; the URL's ``|``, ``<``, ``>`` and spaces percent-encoded, ``&`` escaped as Slack asks."""
    safe_url = quote(url, safe=":/?#[]@!$&'()*+,;=%~").replace("&", "&amp;")
    return f"<{safe_url}|{_mrkdwn(label, max(1, limit - len(safe_url) - 3))}>"


def _blocks(facts: Facts) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(facts.headline, 150), "emoji": True}}
    ]
    # A monstrous URL is not worth a link: it would eat the section's text.
    link = facts.link if facts.link and len(facts.link) <= _MAX_LINKED_URL else None
    title = _link(link, facts.title, 1500) if link else _mrkdwn(facts.title, 500)
    section_text = f"*{title}*"
    room = SLACK_LIMITS["section_text"] - utf16_len(section_text) - 1
    if facts.description and room > 1:
        section_text += "\n" + _mrkdwn(facts.description, room)
    section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": section_text}}
    fields = [(name, _mrkdwn(value, 1900)) for name, value in fact_fields(facts)]
    if link:
        fields.append(("Link", _link(link, "Open in Turbo", 1900)))
    section["fields"] = [
        {"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields[: SLACK_LIMITS["fields"]]
    ]
    blocks.append(section)
    if facts.changes:
        lines = "\n".join(f"• {c.field}: {c.before} → {c.after}" for c in facts.changes)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Changes*\n" + _mrkdwn(lines, 2900)}},
        )
    when = int(facts.timestamp.timestamp())
    fallback = f"{facts.timestamp:%Y-%m-%d %H:%M} UTC"
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    # Slack shows the date in each reader's own time zone.
                    "text": f"`{facts.event_type}` · <!date^{when}^{{date_short_pretty}} {{time}}|{fallback}>",
                }
            ],
        }
    )
    return blocks


class SlackIntegration(JsonIntegration[SlackConfig]):
    """Block Kit messages for Slack incoming webhooks."""

    name: str = "slack"
    signs: bool = False
    config_type = SlackConfig
    content_type = "application/json; charset=utf-8"
    url_rule = WebhookRule(path=_PATH, hosts=SLACK_HOSTS, service="Slack incoming-webhook", example=_EXAMPLE)

    def message(self, event: Event, config: SlackConfig | Mapping[str, Any]) -> dict[str, Any]:
        """The JSON message for ``event``: ``text`` (the notification's fallback) and ``blocks``."""
        facts = describe(event, link_template=self.load_config(config).link_template)
        return {"text": _mrkdwn(facts.summary, SLACK_LIMITS["text"]), "blocks": _blocks(facts)}

    def body(self, event: Event, raw: bytes, config: SlackConfig) -> dict[str, Any]:
        return self.message(event, config)
