"""GitHub outbound, the pure part: the config, what an event asks of GitHub (:class:`GitHubPlan`), the integration.

The plan is sent by :class:`~integrations.github.GitHubTransport` (``_transport.py``),
which alone loads httpx, and only when a worker opens it.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from streams import Event, EventValidationError

from ..core import (
    CONFIG_FIELD,
    OutgoingRequest,
    TransportContext,
    TransportFactory,
    check_http_url,
    check_link_template,
    describe,
    dump_config,
    parse_config,
    retry_after_header,
    stored_config,
    text_of,
    truncate,
)

if TYPE_CHECKING:
    from ._transport import GitHubTransport

__all__ = (
    "DEFAULT_API_URL",
    "GITHUB_BUCKET",
    "LIMITS",
    "MARKER_PREFIX",
    "GitHubConfig",
    "GitHubIntegration",
    "GitHubPlan",
    "github_transport",
    "plan_decoder",
    "turbo_marker",
)

GITHUB_BUCKET: Final = "turbohooks_github"
DEFAULT_API_URL: Final = "https://api.github.com"
MARKER_PREFIX: Final = "<!-- turbohooks:issue="
LIMITS: Final = {"title": 256, "body": 65536, "comment": 65536, "label": 50}
"""GitHub's limits on an issue's title, its body, a comment, a label name."""

Op = Literal["create", "update", "comment", "close", "reopen", "label"]

_REPOSITORY: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_TOKEN_VARIABLE: Final = re.compile(r"^[A-Z_][A-Z0-9_]*_TOKEN$")
"""``token_env``: a worker reads every ``*_TOKEN`` variable once at start (``GitHubSettings``), no other."""
_BODY_ROOM: Final = 60000
_encoder: Final = msgspec.json.Encoder()


@contextlib.asynccontextmanager
async def github_transport(context: TransportContext) -> AsyncIterator[GitHubTransport]:
    """The transport of one worker: one HTTP client (redirects not followed), closed on exit.

    httpx is imported here, when a worker that runs GitHub subscriptions opens
    its transport: a worker of other integrations never loads it (kept over
    aiohttp's client because the transport's error mapping is written for it).
    """
    from ._transport import open_github_transport

    async with open_github_transport(context) as transport:
        yield transport


class GitHubConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A GitHub subscription's ``integration_config``."""

    repository: str
    """``owner/repo``: where Turbo's issues are mirrored."""
    api_url: str = DEFAULT_API_URL
    """The REST API's base URL: ``https://github.example.com/api/v3`` for GitHub Enterprise Server."""
    token: str | None = None
    """A token with ``issues: write``; prefer ``token_env`` (a config is shown by ``subscriptions show``)."""
    token_env: str | None = None
    """The worker's variable holding the token, ending in ``_TOKEN`` (read at start); default ``GITHUB_TOKEN``."""
    labels: list[str] = msgspec.field(default_factory=list)
    """Labels put on every issue it creates, e.g. ``["turbo"]``."""
    link_template: str | None = None
    """Link back to the issue in Turbo, written at the end of each mirrored body."""


class GitHubPlan(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one event asks of GitHub: the body :meth:`GitHubIntegration.render` produces."""

    op: Op
    repository: str
    turbo_issue_id: str
    event_id: str
    title: str | None = None
    """Set when the issue can be created from this event (the create itself, or a lazy mirror)."""
    body: str | None = None
    labels: list[str] = msgspec.field(default_factory=list)
    comment: str | None = None


plan_decoder: Final = msgspec.json.Decoder(GitHubPlan)


def turbo_marker(turbo_issue_id: str) -> str:
    """The hidden line a mirrored body carries, to find the issue again and to link back."""
    return f"{MARKER_PREFIX}{turbo_issue_id} -->"


def _tag_names(current: Mapping[str, Any]) -> list[str]:
    """The label names of an ``issue.tagged``: the added ``tag``, by its name in ``tags`` when it has one."""
    tag = current.get("tag")
    if tag is None:
        return []
    for item in current.get("tags") or []:
        if isinstance(item, Mapping) and str(item.get("id")) == str(tag) and item.get("name"):
            return [truncate(str(item["name"]), LIMITS["label"])]
    return [truncate(text_of(tag), LIMITS["label"])] if text_of(tag) else []


def _all_tags(current: Mapping[str, Any]) -> list[str]:
    tags = current.get("tags")
    if not isinstance(tags, list):
        return []
    names = [text_of(t) for t in tags]
    return [truncate(n, LIMITS["label"]) for n in names if n]


def _comment_text(event: Event) -> str | None:
    current: Mapping[str, Any] = event.data.current
    comment = current.get("comment")
    if isinstance(comment, Mapping):
        current = comment
    for key in ("content", "body", "text"):
        value = current.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


class GitHubIntegration:
    """Issues, comments, state and labels mirrored through the GitHub REST API."""

    name: str = "github"
    signs: bool = False
    requires_url: bool = False
    """The subscription's URL is not where requests go (``api_url`` is); any https URL, e.g. the repository's page."""

    config_type = GitHubConfig

    def __init__(self) -> None:
        self.transport: TransportFactory | None = github_transport

    def load_config(self, config: GitHubConfig | Mapping[str, Any]) -> GitHubConfig:
        """The stored config as :class:`GitHubConfig` (a Struct is returned as is)."""
        return stored_config(config, GitHubConfig)

    def validate_config(self, config: Mapping[str, Any], url: str) -> dict[str, Any]:
        if "repository" not in config:
            raise EventValidationError(
                f"{CONFIG_FIELD}.repository", "is required: the owner/repo that Turbo's issues are mirrored to"
            )
        parsed = parse_config(config, GitHubConfig)
        if not _REPOSITORY.match(parsed.repository):
            raise EventValidationError(f"{CONFIG_FIELD}.repository", f"{parsed.repository!r} is not owner/repo")
        parsed.api_url = check_http_url(parsed.api_url, f"{CONFIG_FIELD}.api_url")
        if parsed.token is not None and not parsed.token.strip():
            raise EventValidationError(f"{CONFIG_FIELD}.token", "is empty; leave it out to use GITHUB_TOKEN")
        if parsed.token_env is not None and not _TOKEN_VARIABLE.match(parsed.token_env):
            raise EventValidationError(
                f"{CONFIG_FIELD}.token_env",
                f"{parsed.token_env!r} is not a variable name ending in _TOKEN (the worker reads those at start)",
            )
        for index, label in enumerate(parsed.labels):
            if not label.strip() or len(label) > LIMITS["label"]:
                raise EventValidationError(f"{CONFIG_FIELD}.labels[{index}]", "must be 1 to 50 characters")
        if parsed.link_template is not None:
            check_link_template(parsed.link_template, f"{CONFIG_FIELD}.link_template")
        return dump_config(parsed)

    def plan(self, event: Event, config: GitHubConfig) -> GitHubPlan | None:
        """What ``event`` asks of GitHub, or ``None`` for events that are not mirrored."""
        issue_id = (
            event.entity_id if event.entity_type == "issue" else event.context.issue_id or _issue_of_comment(event)
        )
        if issue_id is None:
            return None
        facts = describe(event, link_template=config.link_template)
        current = event.data.current
        creatable = event.entity_type == "issue" and bool(current.get("title") or current.get("name"))
        title = truncate(facts.title, LIMITS["title"]) if creatable else None
        body = self._body(facts.description, facts.link, issue_id) if creatable else None
        base = GitHubPlan(
            op="create",
            repository=config.repository,
            turbo_issue_id=issue_id,
            event_id=str(event.event_id),
            title=title,
            body=body,
            labels=list(dict.fromkeys([*config.labels, *_all_tags(current)])) if creatable else [],
        )
        match event.event_type:
            case "issue.created":
                return base if creatable else None
            case "issue.updated":
                if not creatable or not {"title", "name", "description"} & set(event.data.changes):
                    return None
                return msgspec.structs.replace(base, op="update")
            case "issue.commented" | "comment.created":
                text = _comment_text(event)
                if text is None:
                    return None
                # The marker tells GitHub's webhook of this comment apart from people's (an echo).
                comment = truncate(f"**{facts.actor}** commented in Turbo:\n\n{text}", _BODY_ROOM)
                comment += "\n\n" + turbo_marker(issue_id)
                return msgspec.structs.replace(base, op="comment", comment=comment)
            case "issue.closed":
                return msgspec.structs.replace(base, op="close")
            case "issue.reopened":
                return msgspec.structs.replace(base, op="reopen")
            case "issue.tagged":
                names = _tag_names(current)
                return msgspec.structs.replace(base, op="label", labels=names) if names else None
        return None

    @staticmethod
    def _body(description: str, link: str | None, issue_id: str) -> str:
        footer = f"\n\n---\n_Mirrored from Turbo by turbohooks{f' · [open in Turbo]({link})' if link else ''}._\n"
        return truncate(description, _BODY_ROOM) + footer + turbo_marker(issue_id)

    def render(
        self, event: Event, raw: bytes, url: str, config: GitHubConfig | Mapping[str, Any]
    ) -> OutgoingRequest | None:
        parsed = self.load_config(config)
        plan = self.plan(event, parsed)
        if plan is None:
            return None
        return OutgoingRequest(
            url=f"{parsed.api_url}/repos/{parsed.repository}/issues",
            body=_encoder.encode(plan),
            headers={"Content-Type": "application/json"},
        )

    def retry_after(self, status: int | None, headers: Mapping[str, str], body: str) -> float | None:
        waited = retry_after_header(headers)
        if waited is not None:
            return waited
        lowered = {k.lower(): v for k, v in headers.items()}
        if lowered.get("x-ratelimit-remaining", "").strip() != "0":
            return None
        try:
            reset = float(lowered.get("x-ratelimit-reset", ""))
        except ValueError:
            return None
        return max(0.0, reset - time.time()) if math.isfinite(reset) else None


def _issue_of_comment(event: Event) -> str | None:
    value = event.data.current.get("issue_id")
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None
