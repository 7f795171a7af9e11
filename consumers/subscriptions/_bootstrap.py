"""Subscriptions the environment asks for: ``SLACK_WEBHOOK_URL``, ``DISCORD_WEBHOOK_URL``, ``CLAUDE_WEBHOOK_URL``.

:func:`ensure_env_subscriptions` runs once at start (``turbohooks up``, the
gateway). For each variable that is set it makes sure one subscription named
``env-slack`` / ``env-discord`` / ``env-claude`` exists: created the first
time, its URL updated when the variable changed, left alone otherwise.
Removing the variable later deletes nothing; a subscription deleted by hand
while its variable is still set comes back at the next start.

Event types default to a useful set per service and can be set with
``SLACK_EVENT_TYPES`` / ``DISCORD_EVENT_TYPES`` / ``CLAUDE_EVENT_TYPES``
(comma-separated patterns), read at creation only. With
``CLAUDE_WEBHOOK_SECRET`` set, the Claude subscription signs with that secret,
so ``turbohooks claude-server`` (which reads the same variable) verifies it
without copying anything. The variables are the settings role
:class:`~streams.settings.EnvSubscriptionSettings`, read once at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from integrations.core import secret_bytes, validate_destination
from streams import ConfigError, ConflictError, EventValidationError
from streams.settings import EnvSubscriptionSettings

from .._messages import Subscription

if TYPE_CHECKING:
    from ._service import SubscriptionService

__all__ = ("ENV_SUBSCRIPTIONS", "EnvSubscription", "ensure_env_subscriptions")

_NOTIFY: Final = (
    "issue.created",
    "issue.assigned",
    "issue.status_changed",
    "issue.priority_changed",
    "issue.closed",
    "issue.reopened",
    "issue.overdue",
    "comment.created",
    "project.status_changed",
    "milestone.completed",
    "milestone.overdue",
    "system.health_check_failed",
    "system.health_check_recovered",
)


class EnvSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription an environment variable asks for."""

    variable: str
    name: str
    integration: str
    event_types: tuple[str, ...]
    event_types_variable: str


ENV_SUBSCRIPTIONS: Final = (
    EnvSubscription(
        variable="SLACK_WEBHOOK_URL",
        name="env-slack",
        integration="slack",
        event_types=_NOTIFY,
        event_types_variable="SLACK_EVENT_TYPES",
    ),
    EnvSubscription(
        variable="DISCORD_WEBHOOK_URL",
        name="env-discord",
        integration="discord",
        event_types=_NOTIFY,
        event_types_variable="DISCORD_EVENT_TYPES",
    ),
    EnvSubscription(
        variable="CLAUDE_WEBHOOK_URL",
        name="env-claude",
        integration="claude",
        event_types=("comment.created",),
        event_types_variable="CLAUDE_EVENT_TYPES",
    ),
)
"""The variables the design's configuration section names, and what each creates."""


async def _by_name(service: SubscriptionService, name: str, integration: str) -> Subscription | None:
    offset = 0
    while page := await service.store.list(integration=integration, limit=500, offset=offset):
        for sub in page:
            if sub.name == name:
                return sub
        offset += len(page)
    return None


def _asked(wanted: EnvSubscriptionSettings) -> list[tuple[EnvSubscription, str, tuple[str, ...]]]:
    """Each subscription of :data:`ENV_SUBSCRIPTIONS` whose URL is set, with its URL and patterns."""
    slack, discord, claude = ENV_SUBSCRIPTIONS
    given = (
        (slack, wanted.slack_url, wanted.slack_event_types),
        (discord, wanted.discord_url, wanted.discord_event_types),
        (claude, wanted.claude_url, wanted.claude_event_types),
    )
    return [(spec, url, patterns) for spec, url, patterns in given if url]


async def ensure_env_subscriptions(
    service: SubscriptionService, wanted: EnvSubscriptionSettings | None = None
) -> list[Subscription]:
    """Create (or re-point) the subscriptions ``wanted`` asks for; return them.

    ``wanted`` is read once at start (``config.role(EnvSubscriptionSettings)``);
    when not given, the settings are read now. A subscription returned just
    created carries its secret, to be shown once. A refused URL raises
    :class:`~streams.ConfigError` naming the variable.
    """
    # Imported here: the CLI imports this module at start, and the service loads the SQL side.
    from ._shapes import SubscriptionCreate, SubscriptionPatch

    if wanted is None:
        wanted = EnvSubscriptionSettings.from_env()
    settings = service.settings
    ensured: list[Subscription] = []
    for spec, url, patterns in _asked(wanted):
        try:
            existing = await _by_name(service, spec.name, spec.integration)
            if existing is None:
                try:
                    sub = await service.create(
                        SubscriptionCreate(
                            name=spec.name,
                            url=url,
                            event_types=list(patterns or spec.event_types),
                            integration=spec.integration,
                        )
                    )
                except ConflictError:
                    # Another process starting at the same time created it first (or the name
                    # is taken by a subscription of another integration: that one is reported).
                    found = await _by_name(service, spec.name, spec.integration)
                    if found is None:
                        raise
                    sub = found
            else:
                sub = existing
                normalized = await validate_destination(
                    url,
                    allow_http=settings.webhook_allow_http,
                    allowed_hosts=settings.webhook_allowed_hosts,
                    resolve=False,
                )
                if normalized != existing.url:
                    sub = await service.update(existing.id, SubscriptionPatch(url=url))
        except EventValidationError as exc:
            field = spec.event_types_variable if exc.field.startswith("event_types") else spec.variable
            raise ConfigError(field, exc.problem) from None
        if spec.integration == "claude":
            sub = await _adopt_secret(service, sub, wanted.claude_secret)
        ensured.append(sub)
    return ensured


async def _adopt_secret(service: SubscriptionService, sub: Subscription, secret: str | None) -> Subscription:
    """Sign with ``CLAUDE_WEBHOOK_SECRET`` (its first value) when set, so both ends share it."""
    if not secret or secret == sub.secret:
        return sub
    try:
        secret_bytes(secret)
    except EventValidationError as exc:
        raise ConfigError("CLAUDE_WEBHOOK_SECRET", exc.problem) from None
    saved = await service.store.update(msgspec.structs.replace(sub, secret=secret, previous_secret=None))
    await service.registry.put(saved)
    return saved
