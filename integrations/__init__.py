"""Integrations: how an event becomes the request each destination expects.

One :class:`Integration` per kind of destination (custom webhook, Claude,
Slack, Discord, GitHub, e-mail, Zapier), registered in :data:`INTEGRATIONS`;
``turbohooks worker --integration <name>`` runs the subscriptions of some.

* :mod:`integrations.core`: the engine<->integration contract and the leaf tools
  (config parsing, the JSON base, render helpers, ``Retry-After``, signing,
  destination URL rules).
* webhook, Slack, Discord, Zapier, e-mail: one module each.
* :mod:`integrations.claude`: the renderer; :mod:`integrations.claude.server`
  the receiving aiohttp server (``turbohooks claude-server``).
* :mod:`integrations.github`: plan and render, the transport (KV mapping,
  httpx, loaded when a worker opens it) and the inbound webhook.

The receiving server, the GitHub transport and the inbound side are exported
here lazily: a worker process imports neither aiohttp.web nor httpx. Nothing
here imports the delivery engine (``consumers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from streams import EventValidationError, lazy_exports

from ._discord import DISCORD_LIMITS, DiscordConfig, DiscordIntegration
from ._email import EmailConfig, EmailIntegration, EmailTransport, SmtpSettings
from ._slack import SLACK_LIMITS, SlackConfig, SlackIntegration
from ._webhook import WebhookIntegration
from ._zapier import ZapierConfig, ZapierIntegration, flatten
from .claude import CLAUDE_ACTOR, ClaudeConfig, ClaudeIntegration, prompt_context, reply_event
from .core import (
    ErrorKind,
    Facts,
    Integration,
    JsonIntegration,
    OutgoingRequest,
    SendResult,
    Transport,
    TransportContext,
    TransportFactory,
    describe,
    parse_retry_after,
    retry_after_header,
    truncate,
)
from .github import GITHUB_BUCKET, GitHubConfig, GitHubIntegration, GitHubPlan

if TYPE_CHECKING:
    from .claude.server import ClaudeRun, ClaudeServer, ClaudeServerConfig, build_prompt
    from .github import (
        GitHubSignatureError,
        GitHubTransport,
        InboundResult,
        github_event,
        receive_github_webhook,
        verify_github_signature,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "ClaudeRun": ".claude.server",
        "ClaudeServer": ".claude.server",
        "ClaudeServerConfig": ".claude.server",
        "build_prompt": ".claude.server",
        "GitHubSignatureError": ".github",
        "GitHubTransport": ".github",
        "InboundResult": ".github",
        "github_event": ".github",
        "receive_github_webhook": ".github",
        "verify_github_signature": ".github",
    },
)

__all__ = (
    "CLAUDE_ACTOR",
    "DISCORD_LIMITS",
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
    "ErrorKind",
    "Facts",
    "GitHubConfig",
    "GitHubIntegration",
    "GitHubPlan",
    "GitHubSignatureError",
    "GitHubTransport",
    "InboundResult",
    "Integration",
    "JsonIntegration",
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
    "destinations",
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

INTEGRATIONS: Final[MappingProxyType[str, Integration[Any]]] = MappingProxyType(
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


def get_integration(name: str, *, field: str = "integration") -> Integration[Any]:
    """The integration called ``name``; refuse an unknown one naming the choices."""
    try:
        return INTEGRATIONS[name]
    except KeyError:
        raise EventValidationError(
            field, f"unknown integration {name!r}; choose one of {', '.join(sorted(INTEGRATIONS))}"
        ) from None


def destinations(integration: Integration[Any], config: Mapping[str, Any]) -> dict[str, str]:
    """The URLs besides the subscription's that ``integration`` connects to for ``config``, by field name.

    GitHub's ``api_url``: checked at save by the same destination rules as a webhook
    URL (and again, address by address, at each connection).
    """
    found = getattr(integration, "destinations", None)
    return dict(found(config)) if callable(found) else {}


def requires_url(integration: Integration[Any]) -> bool:
    """Whether deliveries go to the subscription's URL, so that it must pass the engine's URL rules.

    E-mail (SMTP, recipients in the config or a ``mailto:`` URL) and GitHub
    (``api_url`` in the config) say ``requires_url = False``.
    """
    return bool(getattr(integration, "requires_url", True))
