"""Integrations: how an event becomes the request each destination expects.

One :class:`Integration` per kind of destination (custom webhook, Claude,
Slack, Discord, GitHub, e-mail, Zapier), registered in :data:`INTEGRATIONS`;
``turbohooks worker --integration <name>`` runs the subscriptions of some.
The receiving side of Claude (``turbohooks claude-server``), GitHub's inbound
webhooks and the subscriptions created from environment variables live here
too.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from streams import EventValidationError

from ._base import (
    ErrorKind,
    Integration,
    OutgoingRequest,
    SendResult,
    Transport,
    TransportContext,
    TransportFactory,
)
from ._bootstrap import ENV_SUBSCRIPTIONS, EnvSubscription, ensure_env_subscriptions
from ._claude import CLAUDE_ACTOR, ClaudeConfig, ClaudeIntegration, prompt_context, reply_event
from ._claude_server import ClaudeRun, ClaudeServer, ClaudeServerConfig, build_prompt
from ._discord import DISCORD_LIMITS, DiscordConfig, DiscordIntegration
from ._email import EmailConfig, EmailIntegration, EmailTransport, SmtpSettings
from ._github import (
    GITHUB_BUCKET,
    GitHubConfig,
    GitHubIntegration,
    GitHubPlan,
    GitHubSignatureError,
    GitHubTransport,
    InboundResult,
    github_event,
    receive_github_webhook,
    verify_github_signature,
)
from ._render import Facts, describe, truncate
from ._retry_after import parse_retry_after, retry_after_header
from ._slack import SLACK_LIMITS, SlackConfig, SlackIntegration
from ._webhook import WebhookIntegration
from ._zapier import ZapierConfig, ZapierIntegration, flatten

__all__ = (
    "CLAUDE_ACTOR",
    "DISCORD_LIMITS",
    "ENV_SUBSCRIPTIONS",
    "GITHUB_BUCKET",
    "INTEGRATIONS",
    "INTEGRATION_NAMES",
    "SLACK_LIMITS",
    "ClaudeConfig",
    "ClaudeIntegration",
    "ClaudeRun",
    "ClaudeServer",
    "ClaudeServerConfig",
    "DiscordConfig",
    "DiscordIntegration",
    "EmailConfig",
    "EmailIntegration",
    "EmailTransport",
    "EnvSubscription",
    "ErrorKind",
    "Facts",
    "GitHubConfig",
    "GitHubIntegration",
    "GitHubPlan",
    "GitHubSignatureError",
    "GitHubTransport",
    "InboundResult",
    "Integration",
    "OutgoingRequest",
    "SendResult",
    "SlackConfig",
    "SlackIntegration",
    "SmtpSettings",
    "Transport",
    "TransportContext",
    "TransportFactory",
    "WebhookIntegration",
    "ZapierConfig",
    "ZapierIntegration",
    "build_prompt",
    "describe",
    "ensure_env_subscriptions",
    "flatten",
    "get_integration",
    "github_event",
    "parse_retry_after",
    "prompt_context",
    "receive_github_webhook",
    "reply_event",
    "requires_url",
    "retry_after_header",
    "truncate",
    "verify_github_signature",
)

INTEGRATIONS: Final[MappingProxyType[str, Integration]] = MappingProxyType(
    {
        integration.name: integration
        for integration in (
            WebhookIntegration(),
            ClaudeIntegration(),
            SlackIntegration(),
            DiscordIntegration(),
            GitHubIntegration(),
            EmailIntegration(),
            ZapierIntegration(),
        )
    }
)
"""Every integration kind, by name."""

INTEGRATION_NAMES: Final = tuple(sorted(INTEGRATIONS))


def get_integration(name: str, *, field: str = "integration") -> Integration:
    """The integration called ``name``; refuse an unknown one naming the choices."""
    try:
        return INTEGRATIONS[name]
    except KeyError:
        raise EventValidationError(
            field, f"unknown integration {name!r}; choose one of {', '.join(sorted(INTEGRATIONS))}"
        ) from None


def requires_url(integration: Integration) -> bool:
    """Whether deliveries go to the subscription's URL, so that it must pass the engine's URL rules.

    E-mail (SMTP, recipients in the config or a ``mailto:`` URL) and GitHub
    (``api_url`` in the config) say ``requires_url = False``.
    """
    return bool(getattr(integration, "requires_url", True))
