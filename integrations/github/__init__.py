"""GitHub: mirror Turbo issues into a repository, and turn GitHub's webhooks into events.

Outbound (a :class:`~integrations.Transport`): ``issue.created`` creates a
GitHub issue, ``issue.updated`` edits its title and body, ``issue.commented``
and ``comment.created`` comment on it, ``issue.closed`` / ``issue.reopened``
close and reopen it, ``issue.tagged`` adds the tag as a label. Other events
are not sent. An event about an issue that was never mirrored (created before
the subscription) mirrors it first when the event carries its title.

The Turbo→GitHub mapping lives in the NATS KV bucket ``turbohooks_github``,
checked before a create and written after, so a redelivered ``issue.created``
never opens a second issue; a create that crashed between GitHub's answer and
the write is found again by the marker each mirrored body carries
(``<!-- turbohooks:issue=<id> -->``). Comments are remembered the same way.

GitHub's answers become :class:`~integrations.SendResult` statuses: 201/200
succeed, 401/404/422 fail, 5xx retry, and a rate limit (403 or 429 with
``X-RateLimit-Remaining: 0`` or ``Retry-After``) is a 429 whose wait comes from
``Retry-After`` or ``X-RateLimit-Reset``.

Inbound: :func:`verify_github_signature` checks ``X-Hub-Signature-256`` and
:func:`receive_github_webhook` turns a delivery into a
``turbo.external.github.<event>`` event, for the gateway's
``POST /api/inbound/github``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams import lazy_exports

from ._plan import GITHUB_BUCKET, GitHubConfig, GitHubIntegration, GitHubPlan, github_transport, turbo_marker

if TYPE_CHECKING:
    from ._inbound import (
        GitHubSignatureError,
        InboundResult,
        github_event,
        receive_github_webhook,
        verify_github_signature,
    )
    from ._transport import GitHubTransport

# The transport loads httpx, the inbound side is the gateway's: neither is a worker's import.
__getattr__ = lazy_exports(
    __name__,
    {
        "GitHubSignatureError": "._inbound",
        "GitHubTransport": "._transport",
        "InboundResult": "._inbound",
        "github_event": "._inbound",
        "receive_github_webhook": "._inbound",
        "verify_github_signature": "._inbound",
    },
)

__all__ = (
    "GITHUB_BUCKET",
    "GitHubConfig",
    "GitHubIntegration",
    "GitHubPlan",
    "GitHubSignatureError",
    "GitHubTransport",
    "InboundResult",
    "github_event",
    "github_transport",
    "receive_github_webhook",
    "turbo_marker",
    "verify_github_signature",
)
