"""Discord: a webhook message with one embed per event.

The embed's author line says what happened, its title (a link when one is
known) names the entity, its colour follows the priority (red critical, orange
high, yellow medium, green low, grey otherwise) and its fields give status,
priority, assignee, project, who and the changes. Everything is cut to
Discord's limits: 256-character titles and field names, 1,024-character field
values, 4,096 of description, 25 fields, 6,000 characters across an embed, and
2,000 of ``content``. ``allowed_mentions`` is empty, so an ``@everyone`` in an
issue title pings nobody.

Deliveries are not signed (``signs = False``): Discord verifies nothing; the
webhook URL is the credential. A 429's wait is read from the JSON body's
``retry_after`` (seconds, fractional), falling back to ``Retry-After``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from streams import Event, EventValidationError

from .core import (
    CONFIG_FIELD,
    Facts,
    JsonIntegration,
    WebhookRule,
    check_http_url,
    describe,
    fact_fields,
    priority_colour,
    retry_after_header,
    truncate,
    utf16_len,
)

__all__ = ("DISCORD_LIMITS", "DiscordConfig", "DiscordIntegration", "embed_length")

DISCORD_LIMITS: Final = {
    "content": 2000,
    "embeds": 10,
    "embed_total": 6000,
    "title": 256,
    "description": 4096,
    "fields": 25,
    "field_name": 256,
    "field_value": 1024,
    "footer": 2048,
    "author": 256,
    "username": 80,
}
"""Discord's message and embed limits this integration keeps to."""

DISCORD_HOSTS: Final = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
_PATH: Final = re.compile(r"^/api(/v\d+)?/webhooks/\d+/[A-Za-z0-9_.-]+/?$")
_EXAMPLE: Final = "https://discord.com/api/webhooks/123456789/abcDEF"
_FORBIDDEN_IN_USERNAME: Final = ("discord", "clyde", "@", "#", ":", "```")
_MAX_URL: Final = 2000


class DiscordConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A Discord subscription's ``integration_config``."""

    link_template: str | None = None
    """Link to the entity in Turbo when the event carries no URL (placeholders as for Slack)."""
    username: str | None = None
    """The name shown as the message's author (1-80 characters); default: the webhook's own."""
    avatar_url: str | None = None
    """The avatar shown beside it."""


def embed_length(embed: Mapping[str, Any]) -> int:
    """The characters Discord counts toward an embed's 6,000: title, description, fields, footer, author."""
    total = utf16_len(embed.get("title", "")) + utf16_len(embed.get("description", ""))
    total += utf16_len(embed.get("footer", {}).get("text", "")) + utf16_len(embed.get("author", {}).get("name", ""))
    for field in embed.get("fields", []):
        total += utf16_len(field["name"]) + utf16_len(field["value"])
    return total


def _embed(facts: Facts) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "author": {"name": truncate(facts.headline, DISCORD_LIMITS["author"])},
        "title": truncate(facts.title, DISCORD_LIMITS["title"]),
        "color": priority_colour(facts),
        "timestamp": facts.timestamp.isoformat(),
        "footer": {"text": truncate(f"{facts.event_type} · event {facts.event_id}", DISCORD_LIMITS["footer"])},
    }
    if facts.link and len(facts.link) <= _MAX_URL:
        embed["url"] = facts.link
    fields = [
        {"name": name, "value": truncate(value, DISCORD_LIMITS["field_value"]), "inline": True}
        for name, value in fact_fields(facts)
    ]
    if facts.changes:
        lines = "\n".join(f"{c.field}: {c.before} → {c.after}" for c in facts.changes)
        fields.append({"name": "Changes", "value": truncate(lines, DISCORD_LIMITS["field_value"]), "inline": False})
    embed["fields"] = fields[: DISCORD_LIMITS["fields"]]
    room = min(DISCORD_LIMITS["description"], DISCORD_LIMITS["embed_total"] - embed_length(embed))
    if facts.description and room > 1:
        embed["description"] = truncate(facts.description, room)
    return embed


class DiscordIntegration(JsonIntegration[DiscordConfig]):
    """Embeds for Discord webhooks."""

    name: str = "discord"
    signs: bool = False
    config_type = DiscordConfig
    url_rule = WebhookRule(path=_PATH, hosts=DISCORD_HOSTS, service="Discord", example=_EXAMPLE)

    def check(self, config: DiscordConfig) -> DiscordConfig:
        if config.username is not None:
            field = f"{CONFIG_FIELD}.username"
            name = config.username.strip()
            if not 1 <= len(name) <= DISCORD_LIMITS["username"]:
                raise EventValidationError(field, f"must be 1 to {DISCORD_LIMITS['username']} characters")
            if any(bad in name.lower() for bad in _FORBIDDEN_IN_USERNAME) or name.lower() in ("everyone", "here"):
                raise EventValidationError(field, f"{name!r} is refused by Discord (no 'discord', 'clyde', @, #, :)")
        if config.avatar_url is not None:
            check_http_url(config.avatar_url, f"{CONFIG_FIELD}.avatar_url")
        return config

    def message(self, event: Event, config: DiscordConfig | Mapping[str, Any]) -> dict[str, Any]:
        """The JSON message for ``event``: one embed, no pings."""
        parsed = self.load_config(config)
        facts = describe(event, link_template=parsed.link_template)
        message: dict[str, Any] = {"embeds": [_embed(facts)], "allowed_mentions": {"parse": []}}
        if parsed.username:
            message["username"] = parsed.username.strip()
        if parsed.avatar_url:
            message["avatar_url"] = parsed.avatar_url
        return message

    def body(self, event: Event, raw: bytes, config: DiscordConfig) -> dict[str, Any]:
        return self.message(event, config)

    def retry_after(self, status: int | None, headers: Mapping[str, str], body: str) -> float | None:
        # Discord's body says it to the millisecond; its Retry-After header rounds up to whole seconds.
        try:
            answer = msgspec.json.decode(body) if body else None
        except msgspec.DecodeError:
            answer = None
        if isinstance(answer, dict):
            value = answer.get("retry_after")
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                return max(0.0, float(value))
        return retry_after_header(headers)
