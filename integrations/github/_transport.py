"""GitHub outbound, the sending part: the REST calls and the Turbo -> GitHub mapping in KV.

Imported only when a worker opens the GitHub transport (it loads httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import httpx
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from streams import NATS_ERRORS, USER_AGENT, Event, EventValidationError, Settings, open_bucket
from streams.settings import GitHubSettings

from ..core import ErrorKind, OutgoingRequest, SendResult, TransportContext, stored_config, validate_destination
from ._plan import GITHUB_BUCKET, GitHubConfig, GitHubPlan, plan_decoder, turbo_marker

__all__ = ("GitHubTransport", "open_github_transport")

_LIST_PAGE: Final = 100
_BODY_CAP: Final = 4096
_encoder: Final = msgspec.json.Encoder()


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

    def __init__(
        self, client: httpx.AsyncClient, js: JetStreamContext, settings: Settings, github: GitHubSettings
    ) -> None:
        self._client = client
        self._js = js
        self._settings = settings
        self._github = github
        """The tokens, read once when the worker opened the transport (``GITHUB_TOKEN``, every ``*_TOKEN``)."""
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

    async def send(
        self, request: OutgoingRequest, event: Event, url: str, config: GitHubConfig | Mapping[str, Any]
    ) -> SendResult:
        started = time.monotonic()
        parsed = stored_config(config, GitHubConfig)
        plan = plan_decoder.decode(request.body)
        token = parsed.token or self._github.token_for(parsed.token_env)
        if not token:
            variable = parsed.token_env or "GITHUB_TOKEN"
            return self._refusal(
                401, f"turbohooks: no GitHub token: set {variable} for the worker and restart it", started
            )
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
        except (*NATS_ERRORS, TimeoutError) as exc:
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

    def failure(self, message: str, kind: ErrorKind, *, url: str = "", body: bytes = b"") -> SendResult:
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
async def open_github_transport(context: TransportContext) -> AsyncIterator[GitHubTransport]:
    """The transport of one worker: one HTTP client (redirects not followed), closed on exit.

    The tokens (:class:`~streams.settings.GitHubSettings`) are read now, once: a
    changed ``GITHUB_TOKEN`` takes effect when the worker restarts.
    """
    github = context.role(GitHubSettings)
    async with httpx.AsyncClient(
        timeout=context.timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
    ) as client:
        yield GitHubTransport(client, context.js, context.settings, github)
