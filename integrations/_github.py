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

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx
import msgspec
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from streams import (
    USER_AGENT,
    Actor,
    Event,
    EventContext,
    EventData,
    EventValidationError,
    Settings,
    TurbohooksError,
    open_bucket,
)

from ._base import OutgoingRequest, SendResult, TransportContext, TransportFactory
from ._config import CONFIG_FIELD, check_http_url, check_link_template, dump_config, parse_config
from ._render import describe, text_of, truncate
from ._retry_after import retry_after_header

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

GITHUB_BUCKET: Final = "turbohooks_github"
DEFAULT_API_URL: Final = "https://api.github.com"
MARKER_PREFIX: Final = "<!-- turbohooks:issue="
LIMITS: Final = {"title": 256, "body": 65536, "comment": 65536, "label": 50}
"""GitHub's limits on an issue's title, its body, a comment, a label name."""

Op = Literal["create", "update", "comment", "close", "reopen", "label"]

_REPOSITORY: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_ENV_NAME: Final = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_EVENT_NAME: Final = re.compile(r"^[a-z_]{1,64}$")
_MARKER: Final = re.compile(r"<!-- turbohooks:issue=([^ >]{1,200}) -->")
_INBOUND_NAMESPACE: Final = uuid.UUID("1b0f0d56-3f51-4a5f-9d0e-0b7b3e8f2c41")
_BODY_ROOM: Final = 60000
_TEXT_CAP: Final = 20000
_LIST_PAGE: Final = 100
_BODY_CAP: Final = 4096
_encoder: Final = msgspec.json.Encoder()


class GitHubConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A GitHub subscription's ``integration_config``."""

    repository: str
    """``owner/repo``: where Turbo's issues are mirrored."""
    api_url: str = DEFAULT_API_URL
    """The REST API's base URL: ``https://github.example.com/api/v3`` for GitHub Enterprise Server."""
    token: str | None = None
    """A token with ``issues: write``; prefer ``token_env`` (a config is shown by ``subscriptions show``)."""
    token_env: str | None = None
    """The environment variable of the worker holding the token; default ``GITHUB_TOKEN``."""
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


_plan_decoder: Final = msgspec.json.Decoder(GitHubPlan)


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

    def __init__(self) -> None:
        self.transport: TransportFactory | None = github_transport

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
        if parsed.token_env is not None and not _ENV_NAME.match(parsed.token_env):
            raise EventValidationError(f"{CONFIG_FIELD}.token_env", f"{parsed.token_env!r} is not a variable name")
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

    def render(self, event: Event, raw: bytes, url: str, config: Mapping[str, Any]) -> OutgoingRequest | None:
        parsed = msgspec.convert(dict(config), GitHubConfig)
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


# -- the transport ---------------------------------------------------------------


class _Answer(msgspec.Struct):
    status: int
    headers: dict[str, str]
    text: str
    url: str
    body: bytes


class _Stop(Exception):
    """Ends a send early, carrying its result (a refusal, GitHub's error, a network failure)."""

    def __init__(self, result: SendResult) -> None:
        self.result = result


class _Mapping(msgspec.Struct, kw_only=True, omit_defaults=True):
    repository: str
    turbo_issue_id: str
    number: int | None = None
    """``None`` while a create is under way (or crashed before GitHub's answer was stored)."""
    html_url: str | None = None


_mapping_decoder: Final = msgspec.json.Decoder(_Mapping)


class _SharedLock:
    """A lock and how many sends hold or wait for it (it is dropped when none do)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


def _key(kind: str, *parts: str) -> str:
    # KV keys allow a small alphabet; Turbo ids and repository names are hashed into it.
    return f"{kind}.{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:40]}"


class GitHubTransport:
    """Sends :class:`GitHubPlan` s to the REST API; opened once per worker by :func:`github_transport`."""

    def __init__(self, client: httpx.AsyncClient, js: JetStreamContext, settings: Settings) -> None:
        self._client = client
        self._js = js
        self._settings = settings
        self._kv: KeyValue | None = None
        self._kv_lock = asyncio.Lock()
        self._accepted: set[str] = set()
        self._issue_locks: dict[str, _SharedLock] = {}

    async def _bucket(self) -> KeyValue:
        # Opened on first use: a worker that never mirrors anything creates no bucket.
        async with self._kv_lock:
            if self._kv is None:
                self._kv = await open_bucket(
                    self._js,
                    self._settings,
                    GITHUB_BUCKET,
                    "turbohooks: Turbo issue -> GitHub issue, and mirrored comments",
                )
            return self._kv

    async def _api_problem(self, api_url: str) -> str | None:
        """Why ``api_url`` may not be called (the engine's destination rules), or ``None``.

        An accepted URL is remembered; a refused one is checked again next time
        (a name that did not resolve may resolve later).
        """
        if api_url in self._accepted:
            return None
        from consumers._urls import validate_destination  # consumers imports integrations

        try:
            await validate_destination(
                api_url,
                allow_http=self._settings.webhook_allow_http,
                allowed_hosts=self._settings.webhook_allowed_hosts,
                field="integration_config.api_url",
            )
        except EventValidationError as exc:
            return str(exc)
        self._accepted.add(api_url)
        return None

    async def send(self, request: OutgoingRequest, event: Event, url: str, config: Mapping[str, Any]) -> SendResult:
        started = time.monotonic()
        parsed = msgspec.convert(dict(config), GitHubConfig)
        plan = _plan_decoder.decode(request.body)
        variable = parsed.token_env or "GITHUB_TOKEN"
        token = parsed.token or os.environ.get(variable, "")
        if not token:
            return self._refusal(401, f"turbohooks: no GitHub token: set {variable} for the worker", started)
        if (problem := await self._api_problem(parsed.api_url)) is not None:
            return self._refusal(400, f"turbohooks: {problem}", started)
        session = _Session(self._client, parsed.api_url, token, started)
        shared = self._issue_locks.setdefault(plan.turbo_issue_id, _SharedLock())
        shared.users += 1
        try:
            # One issue's events one at a time in this worker: a comment waits for its issue's create.
            async with shared.lock:
                answer = await self._apply(session, plan)
        except _Stop as stop:
            return stop.result
        except (NatsError, TimeoutError) as exc:
            return session.failure(f"turbohooks: the mapping bucket is unavailable ({exc})", "connect")
        finally:
            shared.users -= 1
            if not shared.users:
                del self._issue_locks[plan.turbo_issue_id]
        return session.result(answer)

    async def _apply(self, session: _Session, plan: GitHubPlan) -> _Answer | str:
        repo = plan.repository
        if plan.op == "create":
            number, created = await self._ensure_issue(session, plan)
            return created or f"already mirrored as #{number}"
        number = await self._number(session, plan)
        path = f"/repos/{repo}/issues/{number}"
        match plan.op:
            case "update":
                return await session.call("PATCH", path, {"title": plan.title, "body": plan.body})
            case "close":
                return await session.call("PATCH", path, {"state": "closed", "state_reason": "completed"})
            case "reopen":
                return await session.call("PATCH", path, {"state": "open"})
            case "label":
                return await session.call("POST", f"{path}/labels", {"labels": plan.labels})
            case _:
                return await self._comment(session, plan, number)

    async def _comment(self, session: _Session, plan: GitHubPlan, number: int) -> _Answer | str:
        kv = await self._bucket()
        key = _key("comment", session.api_url, plan.repository, plan.event_id)
        with contextlib.suppress(KeyNotFoundError):
            await kv.get(key)
            return f"comment of event {plan.event_id} already on #{number}"
        answer = await session.call(
            "POST", f"/repos/{plan.repository}/issues/{number}/comments", {"body": plan.comment}
        )
        await kv.put(key, _encoder.encode({"number": number, "comment_id": _json_field(answer, "id")}))
        return answer

    async def _mapping(self, key: str) -> _Mapping | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        try:
            return _mapping_decoder.decode(entry.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def _number(self, session: _Session, plan: GitHubPlan) -> int:
        mapped = await self._mapping(_key("issue", session.api_url, plan.repository, plan.turbo_issue_id))
        if mapped is not None and mapped.number is not None:
            return mapped.number
        if plan.title is None:
            # Its issue.created may still be on its way (a retry arrives after later events).
            raise _Stop(
                session.refusal(
                    503, f"turbohooks: Turbo issue {plan.turbo_issue_id} is not mirrored to {plan.repository} yet"
                )
            )
        number, _ = await self._ensure_issue(session, plan)
        return number

    async def _ensure_issue(self, session: _Session, plan: GitHubPlan) -> tuple[int, _Answer | None]:
        """The GitHub issue of ``plan``'s Turbo issue, created unless the mapping (or the marker) finds it."""
        kv = await self._bucket()
        key = _key("issue", session.api_url, plan.repository, plan.turbo_issue_id)
        mapped = await self._mapping(key)
        if mapped is not None and mapped.number is not None:
            return mapped.number, None
        if mapped is not None:
            # A create began and never recorded its answer: look for the issue before making another.
            found = await self._find_by_marker(session, plan)
            if found is not None and found.number is not None:
                await kv.put(key, _encoder.encode(found))
                return found.number, None
        else:
            pending = _Mapping(repository=plan.repository, turbo_issue_id=plan.turbo_issue_id)
            await kv.put(key, _encoder.encode(pending))
        answer = await session.call(
            "POST",
            f"/repos/{plan.repository}/issues",
            {"title": plan.title, "body": plan.body, "labels": plan.labels},
        )
        number = _json_field(answer, "number")
        if not isinstance(number, int):
            raise _Stop(session.refusal(502, f"turbohooks: GitHub's answer to a create has no number: {answer.text}"))
        mapping = _Mapping(
            repository=plan.repository,
            turbo_issue_id=plan.turbo_issue_id,
            number=number,
            html_url=str(_json_field(answer, "html_url") or "") or None,
        )
        await kv.put(key, _encoder.encode(mapping))
        return number, answer

    async def _find_by_marker(self, session: _Session, plan: GitHubPlan) -> _Mapping | None:
        marker = turbo_marker(plan.turbo_issue_id)
        answer = await session.call(
            "GET",
            f"/repos/{plan.repository}/issues",
            None,
            params={"state": "all", "sort": "created", "direction": "desc", "per_page": str(_LIST_PAGE)},
        )
        try:
            issues = msgspec.json.decode(answer.text)
        except msgspec.DecodeError:
            return None
        for issue in issues if isinstance(issues, list) else []:
            if isinstance(issue, dict) and marker in str(issue.get("body") or "") and "pull_request" not in issue:
                number = issue.get("number")
                return _Mapping(
                    repository=plan.repository,
                    turbo_issue_id=plan.turbo_issue_id,
                    number=number if isinstance(number, int) else None,
                    html_url=issue.get("html_url"),
                )
        return None

    @staticmethod
    def _refusal(status: int, message: str, started: float) -> SendResult:
        return SendResult(status=status, body=message, latency_ms=(time.monotonic() - started) * 1000)


def _json_field(answer: _Answer, name: str) -> Any:
    try:
        value = msgspec.json.decode(answer.text)
    except msgspec.DecodeError:
        return None
    return value.get(name) if isinstance(value, dict) else None


class _Session:
    """The calls of one send: authenticated, each answer checked, the last one reported."""

    def __init__(self, client: httpx.AsyncClient, api_url: str, token: str, started: float) -> None:
        self.client = client
        self.api_url = api_url
        self.started = started
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        self.last: _Answer | None = None

    def _shown_headers(self) -> dict[str, str]:
        # The delivery log keeps request headers: never the token.
        return {**self.headers, "Authorization": "Bearer ***"}

    def _latency(self) -> float:
        return (time.monotonic() - self.started) * 1000

    async def call(self, method: str, path: str, payload: Any, *, params: dict[str, str] | None = None) -> _Answer:
        url = self.api_url + path
        body = b"" if payload is None else _encoder.encode(payload)
        headers = self.headers if payload is None else {**self.headers, "Content-Type": "application/json"}
        try:
            response = await self.client.request(method, url, content=body or None, headers=headers, params=params)
        except httpx.TimeoutException as exc:
            raise _Stop(self.failure(f"GitHub timed out: {exc!r}", "timeout", url=url, body=body)) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Stop(self.failure(f"cannot reach GitHub: {exc!r}", "connect", url=url, body=body)) from None
        except httpx.HTTPError as exc:
            raise _Stop(
                self.failure(f"GitHub's answer was unreadable: {exc!r}", "protocol", url=url, body=body)
            ) from None
        answer = _Answer(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            text=response.text,
            url=url,
            body=body,
        )
        self.last = answer
        if not 200 <= answer.status < 300:
            raise _Stop(self.result(answer))
        return answer

    def failure(
        self, message: str, kind: Literal["timeout", "connect", "protocol"], *, url: str = "", body: bytes = b""
    ) -> SendResult:
        return SendResult(
            status=None,
            latency_ms=self._latency(),
            error=message,
            error_kind=kind,
            request_url=url,
            request_headers=self._shown_headers(),
            request_body=body,
        )

    def refusal(self, status: int, message: str) -> SendResult:
        return SendResult(
            status=status, body=message, latency_ms=self._latency(), request_headers=self._shown_headers()
        )

    def result(self, outcome: _Answer | str) -> SendResult:
        """A GitHub answer as the engine classifies it (a rate limit is a 429), or a no-op's note."""
        if isinstance(outcome, str):
            return SendResult(
                status=200, body=outcome, latency_ms=self._latency(), request_headers=self._shown_headers()
            )
        status = outcome.status
        limited = outcome.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in outcome.headers
        if status == 403 and limited:
            status = 429
        return SendResult(
            status=status,
            headers=outcome.headers,
            body=outcome.text[:_BODY_CAP],
            latency_ms=self._latency(),
            request_url=outcome.url,
            request_headers=self._shown_headers(),
            request_body=outcome.body,
        )


@contextlib.asynccontextmanager
async def github_transport(context: TransportContext) -> AsyncIterator[GitHubTransport]:
    """The transport of one worker: one HTTP client (redirects not followed), closed on exit."""
    async with httpx.AsyncClient(
        timeout=context.timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
    ) as client:
        yield GitHubTransport(client, context.js, context.settings)


# -- inbound ---------------------------------------------------------------------


class GitHubSignatureError(TurbohooksError):
    """A GitHub webhook delivery's ``X-Hub-Signature-256`` is missing or wrong."""


class InboundResult(msgspec.Struct, kw_only=True):
    """What the gateway answers GitHub, and what was published."""

    status: int
    detail: str
    event_id: str | None = None
    subject: str | None = None


def verify_github_signature(secret: str, body: bytes, header: str | None) -> None:
    """Check ``X-Hub-Signature-256`` (``sha256=`` + hex HMAC of the body, keyed by the hook's secret)."""
    if not secret:
        raise GitHubSignatureError("turbohooks: no GitHub webhook secret is configured")
    if not header:
        raise GitHubSignatureError("turbohooks: X-Hub-Signature-256 is missing")
    scheme, _, received = header.strip().partition("=")
    if scheme != "sha256" or not received:
        raise GitHubSignatureError("turbohooks: X-Hub-Signature-256 is not sha256=<hex>")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received.lower()):
        raise GitHubSignatureError("turbohooks: X-Hub-Signature-256 does not match the body")


def _login(user: object) -> str:
    return str(user.get("login") or "") if isinstance(user, Mapping) else ""


def _issue_view(issue: Mapping[str, Any]) -> dict[str, Any]:
    labels = [label.get("name") for label in issue.get("labels") or [] if isinstance(label, Mapping)]
    return {
        "number": issue.get("number"),
        "title": issue.get("title"),
        "state": issue.get("state"),
        "html_url": issue.get("html_url"),
        "body": truncate(str(issue.get("body") or ""), _TEXT_CAP),
        "labels": labels,
        "user": _login(issue.get("user")),
    }


def _inbound_data(name: str, payload: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Entity type, entity id and ``data.current`` of one GitHub delivery (the parts worth keeping)."""
    repository = payload.get("repository")
    repo = str(repository.get("full_name") or "") if isinstance(repository, Mapping) else ""
    current: dict[str, Any] = {"event": name, "action": payload.get("action"), "repository": repo}
    issue = payload.get("issue")
    pull = payload.get("pull_request")
    if isinstance(issue, Mapping):
        current["issue"] = _issue_view(issue)
        comment = payload.get("comment")
        if isinstance(comment, Mapping):
            current["comment"] = {
                "id": comment.get("id"),
                "body": truncate(str(comment.get("body") or ""), _TEXT_CAP),
                "html_url": comment.get("html_url"),
                "user": _login(comment.get("user")),
            }
        kind = "github_pull_request" if "pull_request" in issue else "github_issue"
        return kind, f"{repo}#{issue.get('number')}", current
    if isinstance(pull, Mapping):
        current["pull_request"] = {
            **_issue_view(pull),
            "merged": pull.get("merged"),
            "head": (pull.get("head") or {}).get("ref") if isinstance(pull.get("head"), Mapping) else None,
            "base": (pull.get("base") or {}).get("ref") if isinstance(pull.get("base"), Mapping) else None,
        }
        return "github_pull_request", f"{repo}#{pull.get('number')}", current
    if name == "push":
        listed = payload.get("commits")
        commits: list[Any] = listed if isinstance(listed, list) else []
        current.update(
            ref=payload.get("ref"),
            before=payload.get("before"),
            after=payload.get("after"),
            compare=payload.get("compare"),
            commits=[
                {
                    "id": c.get("id"),
                    "message": truncate(str(c.get("message") or ""), 1000),
                    "author": (c.get("author") or {}).get("name") if isinstance(c.get("author"), Mapping) else None,
                }
                for c in commits[:20]
                if isinstance(c, Mapping)
            ],
        )
        return "github_repository", repo or "unknown", current
    current.update({k: v for k, v in payload.items() if isinstance(v, str | int | float | bool) and k not in current})
    return "github_repository", repo or "unknown", current


def github_event(event_name: str | None, delivery_id: str | None, body: bytes) -> Event | None:
    """The ``external.github.<event>`` event of one delivery; ``None`` for GitHub's ``ping``.

    The event id is derived from ``X-GitHub-Delivery``, so GitHub's redelivery
    of the same delivery is stored once. When the issue is one turbohooks
    mirrored, ``context.issue_id`` names the Turbo issue; an echo of the
    mirror's own writes is marked ``actor.type = "system"`` and ``echo: true``.
    """
    name = (event_name or "").strip()
    if not _EVENT_NAME.match(name):
        raise EventValidationError("X-GitHub-Event", f"{event_name!r} is not a GitHub event name")
    if name == "ping":
        return None
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise EventValidationError("body", f"is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise EventValidationError("body", "is not a JSON object")
    entity_type, entity_id, current = _inbound_data(name, payload)
    given = payload.get("sender")
    sender: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    issue_body = str((current.get("issue") or current.get("pull_request") or {}).get("body") or "")
    comment_body = str((current.get("comment") or {}).get("body") or "")
    marker = _MARKER.search(issue_body)
    echo = MARKER_PREFIX in comment_body or (
        name == "issues" and marker is not None and payload.get("action") == "opened"
    )
    current["echo"] = echo
    actor_type: Literal["user", "system"] = "system" if echo or sender.get("type") == "Bot" else "user"
    return Event(
        event_id=uuid.uuid5(_INBOUND_NAMESPACE, delivery_id) if delivery_id else uuid.uuid4(),
        event_type=f"external.github.{name}",
        timestamp=datetime.now(UTC),
        entity_type=entity_type,
        entity_id=entity_id,
        action=str(payload.get("action") or name),
        actor=Actor(
            type=actor_type,
            name=_login(sender) or "github",
            metadata={"source": "github", "github_id": sender.get("id"), "html_url": sender.get("html_url")},
        ),
        data=EventData(current=current),
        context=EventContext(issue_id=marker.group(1) if marker else None),
    )


async def receive_github_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    publish: Callable[[Event], Awaitable[object]],
) -> InboundResult:
    """The whole inbound route: verify, build the event, publish; what to answer GitHub.

    401 and nothing published for a bad or missing signature; 400 for a
    delivery that is not JSON or names no event; 200 for ``ping``; 202 once
    the event is stored.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        verify_github_signature(secret, body, lowered.get("x-hub-signature-256"))
    except GitHubSignatureError as exc:
        return InboundResult(status=401, detail=str(exc))
    try:
        event = github_event(lowered.get("x-github-event"), lowered.get("x-github-delivery"), body)
    except EventValidationError as exc:
        return InboundResult(status=400, detail=str(exc))
    if event is None:
        return InboundResult(status=200, detail="pong")
    await publish(event)
    return InboundResult(status=202, detail="published", event_id=str(event.event_id), subject=event.subject)
