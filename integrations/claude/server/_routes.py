"""The aiohttp application of ``turbohooks claude-server``: receive, list runs, health."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from streams import CAUSATION_HEADER, EventValidationError, decode_event

from ...core import SignatureError, verify
from .._integration import issue_id_of
from ._config import ClaudeServerConfig
from ._history import ClaudeRun, RunHistory
from ._metrics import ClaudeServerMetrics
from ._runner import Job, Publish, Runner

__all__ = ("ClaudeServer",)

_encoder: Final = msgspec.json.Encoder()


class ClaudeServer:
    """The server, as an async context manager: listening on enter, runs stopped on exit.

    ``publish`` sends a reply event (an :class:`~publishers.EventPublisher`'s
    ``publish``); it is only used with ``publish_replies``.
    """

    def __init__(
        self, config: ClaudeServerConfig, *, publish: Publish | None = None, metrics: ClaudeServerMetrics | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics or ClaudeServerMetrics()
        self.history = RunHistory(config)
        self.runner = Runner(config, self.history, publish)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def runs(self) -> OrderedDict[str, ClaudeRun]:
        """The latest runs, by id, oldest first."""
        return self.history.runs

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def app(self) -> web.Application:
        """The aiohttp application (routes only; :meth:`__aenter__` serves it)."""
        app = web.Application(client_max_size=4 << 20, middlewares=[self._count])
        for path in ("/webhook/comment", "/webhook", "/"):
            app.router.add_post(path, self._receive)
        app.router.add_get("/runs", self._list_runs)
        app.router.add_get("/runs/{run_id}", self._get_run)
        app.router.add_get("/health", self._health)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.metrics.request(request.method, template, exc.status)
            raise
        self.metrics.request(request.method, template, response.status)
        return response

    async def __aenter__(self) -> Self:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.history.load)
        self.runner.start()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.runner.stop()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(list(self.config.secrets), request.headers, body)
        except SignatureError as exc:
            return web.json_response({"error": f"signature: {exc}"}, status=401)
        try:
            event = decode_event(body)
            envelope = msgspec.json.decode(body)
        except (EventValidationError, msgspec.DecodeError) as exc:
            return web.json_response({"error": f"not a Turbo event: {exc}"}, status=400)
        if event.event_type == "system.subscription_probe":
            # turbohooks asking whether this server is back (self-healing): yes, and nothing to run.
            return web.json_response({"probe": "ok"})
        if event.actor.type == "ai":
            # The integration never sends these; a second guard costs nothing.
            return web.json_response({"skipped": "the event's actor is an AI"})
        webhook_id = request.headers["webhook-id"]
        if (known := self.history.run_of(webhook_id)) is not None:
            return web.json_response({"duplicate": True, "run_id": known})
        context = envelope.get("prompt_context") if isinstance(envelope, dict) else None
        issue = issue_id_of(event) or f"{event.entity_type}:{event.entity_id}"
        run = ClaudeRun(
            run_id=uuid.uuid4().hex,
            webhook_id=webhook_id,
            event_id=str(event.event_id),
            event_type=event.event_type,
            issue=issue,
            queued_at=datetime.now(UTC),
        )
        self.history.saw(webhook_id, run.run_id)
        ahead = self.runner.ahead(issue)
        await self.history.record(run)
        self.runner.enqueue(
            Job(run, event, context if isinstance(context, dict) else {}, request.headers.get(CAUSATION_HEADER))
        )
        return web.json_response({"run_id": run.run_id, "issue": issue, "ahead": ahead}, status=202)

    async def _list_runs(self, request: web.Request) -> web.Response:
        issue = request.query.get("issue")
        status = request.query.get("status")
        try:
            limit = max(1, min(int(request.query.get("limit", "100")), self.config.history))
        except ValueError:
            return web.json_response({"error": "limit: not a whole number"}, status=400)
        runs = [
            r
            for r in reversed(self.runs.values())
            if (issue is None or r.issue == issue) and (status is None or r.status == status)
        ]
        return web.Response(body=_encoder.encode({"runs": runs[:limit]}), content_type="application/json")

    async def _get_run(self, request: web.Request) -> web.Response:
        run = self.runs.get(request.match_info["run_id"])
        if run is None:
            return web.json_response({"error": "no such run"}, status=404)
        return web.Response(body=_encoder.encode(run), content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "running": self.runner.running, "queued": self.runner.queued})
