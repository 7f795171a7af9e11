"""Local fakes of the services: real servers that check each request the way the service does.

Each HTTP fake is an aiohttp server on 127.0.0.1 with a free port. It records
every request with the problems the real service would have refused it for
(``Call.problems``), answers like the service (Slack's ``ok``, Discord's 204,
GitHub's JSON), and can be told to answer the next requests with the service's
own errors and rate limits (:meth:`FakeService.script`). The SMTP fake is a
real aiosmtpd server in the test's event loop.

The ``check_*`` functions are the services' rules, shared with the contract test.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import msgspec
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

# -- the services' rules -----------------------------------------------------------


def _len(text: str) -> int:
    # What the services' JavaScript validators count: UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def check_slack_message(message: Any) -> list[str]:
    """What Slack's incoming webhook refuses (``invalid_blocks``, ``no_text``), per the Block Kit reference."""
    problems: list[str] = []
    if not isinstance(message, dict):
        return ["invalid_payload: not a JSON object"]
    text, blocks = message.get("text"), message.get("blocks")
    if not text and not blocks:
        problems.append("no_text: neither text nor blocks")
    if text is not None and (not isinstance(text, str) or _len(text) > 40000):
        problems.append("text: not a string of at most 40,000 characters")
    if blocks is None:
        return problems
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return [*problems, "invalid_blocks: blocks must be a list of 1 to 50"]
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        kind = block.get("type")
        if kind == "header":
            t = block.get("text", {})
            if t.get("type") != "plain_text" or not 1 <= _len(t.get("text", "")) <= 150:
                problems.append(f"{where}: header text must be plain_text of 1 to 150 characters")
        elif kind == "section":
            t = block.get("text")
            fields = block.get("fields")
            if t is None and not fields:
                problems.append(f"{where}: a section needs text or fields")
            if t is not None and (t.get("type") not in ("mrkdwn", "plain_text") or not 1 <= _len(t["text"]) <= 3000):
                problems.append(f"{where}: section text must be 1 to 3,000 characters")
            if fields is not None:
                if len(fields) > 10:
                    problems.append(f"{where}: more than 10 fields")
                for f in fields:
                    if not 1 <= _len(f.get("text", "")) <= 2000:
                        problems.append(f"{where}: a field must be 1 to 2,000 characters")
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10:
                problems.append(f"{where}: context needs 1 to 10 elements")
            for element in elements:
                if element.get("type") in ("mrkdwn", "plain_text") and not 1 <= _len(element.get("text", "")) <= 3000:
                    problems.append(f"{where}: a context text must be 1 to 3,000 characters")
        elif kind not in ("divider", "image", "actions", "rich_text"):
            problems.append(f"{where}: unknown block type {kind!r}")
    return problems


def _embed_length(embed: dict[str, Any]) -> int:
    total = _len(embed.get("title", "")) + _len(embed.get("description", ""))
    total += _len(embed.get("footer", {}).get("text", "")) + _len(embed.get("author", {}).get("name", ""))
    return total + sum(_len(f.get("name", "")) + _len(f.get("value", "")) for f in embed.get("fields", []))


def check_discord_message(message: Any) -> list[str]:
    """What Discord's execute-webhook endpoint refuses (``50035 Invalid Form Body``)."""
    if not isinstance(message, dict):
        return ["body: not a JSON object"]
    problems: list[str] = []
    content, embeds = message.get("content"), message.get("embeds") or []
    if not content and not embeds:
        problems.append("50006: cannot send an empty message")
    if content is not None and _len(content) > 2000:
        problems.append("content: more than 2,000 characters")
    if len(embeds) > 10:
        problems.append("embeds: more than 10")
    if "username" in message and not 1 <= _len(message["username"]) <= 80:
        problems.append("username: must be 1 to 80 characters")
    total = 0
    for index, embed in enumerate(embeds):
        where = f"embeds[{index}]"
        total += _embed_length(embed)
        limits = (("title", 256), ("description", 4096))
        problems += [f"{where}.{k}: more than {n}" for k, n in limits if _len(embed.get(k, "")) > n]
        if _len(embed.get("author", {}).get("name", "")) > 256:
            problems.append(f"{where}.author.name: more than 256")
        if _len(embed.get("footer", {}).get("text", "")) > 2048:
            problems.append(f"{where}.footer.text: more than 2,048")
        if "url" in embed and not str(embed["url"]).startswith(("http://", "https://")):
            problems.append(f"{where}.url: not a URL")
        colour = embed.get("color", 0)
        if not isinstance(colour, int) or not 0 <= colour <= 0xFFFFFF:
            problems.append(f"{where}.color: not an RGB integer")
        fields = embed.get("fields", [])
        if len(fields) > 25:
            problems.append(f"{where}.fields: more than 25")
        for f in fields:
            if not 1 <= _len(f.get("name", "")) <= 256 or not 1 <= _len(f.get("value", "")) <= 1024:
                problems.append(f"{where}.fields: name 1-256 and value 1-1,024 characters")
    if total > 6000:
        problems.append(f"embeds: {total} characters in total, more than 6,000")
    return problems


def check_flat(payload: Any) -> list[str]:
    """Zapier maps a flat object best: every value a string, number, boolean or null."""
    if not isinstance(payload, dict):
        return ["not a JSON object"]
    return [f"{key}: a nested value" for key, value in payload.items() if isinstance(value, dict | list)]


# -- the HTTP fakes ------------------------------------------------------------------


@dataclass
class Call:
    """One request as the fake saw it, and what the real service would have refused."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    problems: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class Scripted:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class FakeService:
    """A real local HTTP server; subclasses answer as their service does."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.url = ""
        self._scripted: deque[Scripted] = deque()
        self._runner: web.AppRunner | None = None

    def script(self, status: int, body: str = "", headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests with this, after checking them as usual."""
        self._scripted.extend(Scripted(status, body, headers or {}) for _ in range(times))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        call = Call(request.method, request.path_qs, dict(request.headers), await request.read(), time.monotonic())
        self.calls.append(call)
        self.check(call)
        if self._scripted:
            # A scripted error or rate limit: the request is checked, but takes no effect.
            answer = self._scripted.popleft()
            return web.Response(status=answer.status, text=answer.body, headers=answer.headers)
        return await self.handle(call, request)

    def check(self, call: Call) -> None:
        """Record in ``call.problems`` what the service would refuse."""

    async def handle(self, call: Call, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def json_of(self, call: Call) -> Any:
        if "application/json" not in call.headers.get("Content-Type", ""):
            call.problems.append("Content-Type is not application/json")
        try:
            return call.json
        except msgspec.DecodeError:
            call.problems.append("body is not JSON")
            return None


class FakeSlack(FakeService):
    """Slack's incoming webhooks: ``POST /services/T…/B…/…``, Block Kit checked, ``ok`` or ``invalid_blocks``."""

    path = "/services/T0001/B0001/abcdefGHIJ"

    @property
    def hook(self) -> str:
        return self.url + self.path

    def check(self, call: Call) -> None:
        if call.method != "POST" or not re.match(r"^/services/\w+/\w+/\w+$", call.path):
            call.problems.append("no_service")
            return
        call.problems += check_slack_message(self.json_of(call))

    async def handle(self, call: Call, request: web.Request) -> web.StreamResponse:
        if "no_service" in call.problems:
            return web.Response(status=404, text="no_service")
        if call.problems:
            return web.Response(status=400, text="invalid_blocks")
        return web.Response(text="ok")


class FakeDiscord(FakeService):
    """Discord's execute webhook: ``POST /api/webhooks/{id}/{token}``, limits checked, 204 or 400."""

    path = "/api/webhooks/1234567890/tok-en_XYZ"

    @property
    def hook(self) -> str:
        return self.url + self.path

    def rate_limit(self, retry_after: float) -> None:
        """The next answer is Discord's 429, its wait only in the body (to prove the body is read)."""
        body = msgspec.json.encode({"message": "You are being rate limited.", "retry_after": retry_after})
        self.script(429, body.decode(), {"Content-Type": "application/json"})

    def check(self, call: Call) -> None:
        if call.method != "POST" or not re.match(r"^/api(/v\d+)?/webhooks/\d+/[\w.-]+$", call.path):
            call.problems.append("unknown webhook")
            return
        call.problems += check_discord_message(self.json_of(call))

    async def handle(self, call: Call, request: web.Request) -> web.StreamResponse:
        if "unknown webhook" in call.problems:
            return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if call.problems:
            return web.json_response(
                {"code": 50035, "message": "Invalid Form Body", "errors": call.problems}, status=400
            )
        return web.Response(status=204)


class FakeZapier(FakeService):
    """A Zapier catch hook: ``POST /hooks/catch/{id}/{key}/``, any JSON accepted, flatness recorded."""

    path = "/hooks/catch/123456/abcdef/"

    @property
    def hook(self) -> str:
        return self.url + self.path

    def check(self, call: Call) -> None:
        call.problems += check_flat(self.json_of(call))

    async def handle(self, call: Call, request: web.Request) -> web.StreamResponse:
        return web.json_response({"attempt": "a-1", "id": "i-1", "request_id": "r-1", "status": "success"})


class FakeGitHub(FakeService):
    """GitHub's REST API for issues of one repository: auth, routes, JSON, numbers, comments, labels."""

    def __init__(self, repository: str = "octo/turbo", token: str = "ghp_test") -> None:  # noqa: S107 — the fake's own token
        super().__init__()
        self.repository = repository
        self.token = token
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: list[dict[str, Any]] = []
        self._numbers = itertools.count(1)
        self._ids = itertools.count(1000)

    def rate_limit(self, reset_in: float) -> None:
        """The next answer is GitHub's primary rate limit: 403, remaining 0, reset in ``reset_in`` seconds."""
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time() + reset_in + 0.999))}
        self.script(403, '{"message": "API rate limit exceeded"}', headers)

    def _issue_json(self, issue: dict[str, Any]) -> dict[str, Any]:
        return {**issue, "html_url": f"https://github.com/{self.repository}/issues/{issue['number']}"}

    def check(self, call: Call) -> None:
        scheme, _, token = call.headers.get("Authorization", "").partition(" ")
        if scheme not in ("Bearer", "token") or token != self.token:
            call.problems.append("bad credentials")
        if "application/vnd.github+json" not in call.headers.get("Accept", ""):
            call.problems.append("Accept is not application/vnd.github+json")

    async def handle(self, call: Call, request: web.Request) -> web.StreamResponse:
        if "bad credentials" in call.problems:
            return web.json_response({"message": "Bad credentials"}, status=401)
        prefix = f"/repos/{self.repository}/issues"
        path = request.path
        if not path.startswith(prefix):
            call.problems.append(f"unknown route {call.method} {path}")
            return web.json_response({"message": "Not Found"}, status=404)
        rest = path[len(prefix) :].strip("/").split("/") if path != prefix else []
        data = self.json_of(call) if call.method in ("POST", "PATCH") else None
        if not rest and call.method == "POST":
            return self._create(call, data)
        if not rest and call.method == "GET":
            listed = sorted(self.issues.values(), key=lambda i: -i["number"])
            return web.json_response([self._issue_json(i) for i in listed])
        number = int(rest[0]) if rest[0].isdigit() else -1
        issue = self.issues.get(number)
        if issue is None:
            call.problems.append(f"no issue {rest[0]}")
            return web.json_response({"message": "Not Found"}, status=404)
        if len(rest) == 1 and call.method == "PATCH":
            issue.update({k: v for k, v in data.items() if k in ("title", "body", "state", "state_reason")})
            return web.json_response(self._issue_json(issue))
        if rest[1:] == ["comments"] and call.method == "POST":
            if not isinstance(data.get("body"), str) or not data["body"] or len(data["body"]) > 65536:
                call.problems.append("comment body missing or longer than 65,536")
                return web.json_response({"message": "Validation Failed"}, status=422)
            comment = {"id": next(self._ids), "issue": number, "body": data["body"]}
            self.comments.append(comment)
            return web.json_response(comment, status=201)
        if rest[1:] == ["labels"] and call.method == "POST":
            labels = data.get("labels")
            if not isinstance(labels, list) or any(not isinstance(x, str) or len(x) > 50 for x in labels):
                call.problems.append("labels must be names of at most 50 characters")
                return web.json_response({"message": "Validation Failed"}, status=422)
            issue["labels"] = list(dict.fromkeys([*issue["labels"], *labels]))
            return web.json_response([{"name": n} for n in issue["labels"]])
        call.problems.append(f"unknown route {call.method} {path}")
        return web.json_response({"message": "Not Found"}, status=404)

    def _create(self, call: Call, data: Any) -> web.Response:
        title = data.get("title") if isinstance(data, dict) else None
        if not isinstance(title, str) or not title or len(title) > 256:
            call.problems.append("title missing or longer than 256")
            return web.json_response({"message": "Validation Failed"}, status=422)
        body = data.get("body") or ""
        if len(body) > 65536:
            call.problems.append("body longer than 65,536")
            return web.json_response({"message": "Validation Failed"}, status=422)
        number = next(self._numbers)
        self.issues[number] = {
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "labels": list(data.get("labels") or []),
        }
        return web.json_response(self._issue_json(self.issues[number]), status=201)


# -- the SMTP fake ------------------------------------------------------------------


@dataclass
class FakeSmtp:
    """A real SMTP server (aiosmtpd) on 127.0.0.1: records mails, refuses as told."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    """Recipient → the RCPT reply refusing it, e.g. ``550 5.1.1 no such user``."""
    data_replies: deque[str] = field(default_factory=deque)
    """Replies to the next DATA commands instead of ``250``, e.g. ``451 4.3.0 try again later``."""
    attempts: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def handle_RCPT(  # aiosmtpd calls its hooks by these names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.data_replies:
            return self.data_replies.popleft()
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        self.arrived.set()
        return "250 Message accepted for delivery"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        factory: Callable[[], SMTP] = lambda: SMTP(self, hostname="fake-smtp", loop=loop)  # noqa: E731
        self.server = await loop.create_server(factory, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
