"""The test HTTP receiver: a real server on 127.0.0.1 that records every request and answers as told."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

__all__ = ("Received", "Receiver", "serve_receiver")


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """``time.monotonic()`` when it arrived."""

    @property
    def event(self) -> dict[str, object]:
        return msgspec.json.decode(self.body)  # type: ignore[no-any-return]

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


@dataclass
class Receiver:
    """Records every request; each path answers as its script says, else its status, else 200.

    The answer's body is ``answer <status>``, followed by ``padding`` characters
    (a body longer than the delivery log's cap, to see it truncated).
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    """Per path: the statuses to answer, in order; the last one repeats."""
    statuses: dict[str, int] = field(default_factory=dict)
    """Per path: the status to answer every time (when it has no script)."""
    delays: dict[str, float] = field(default_factory=dict)
    extra_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    padding: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def endpoint(self, path: str, statuses: list[int] | None = None, delay: float = 0.0) -> str:
        if statuses is not None:
            self.scripts[path] = list(statuses)
        if delay:
            self.delays[path] = delay
        return self.url + path

    def _status(self, path: str) -> int:
        script = self.scripts.get(path)
        if script:
            return script.pop(0) if len(script) > 1 else script[0]
        return self.statuses.get(path, 200)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        self.arrived.set()
        if delay := self.delays.get(request.path):
            await asyncio.sleep(delay)
        status = self._status(request.path)
        text = f"answer {status}" + (" " + "y" * self.padding if self.padding else "")
        return web.Response(status=status, text=text, headers=self.extra_headers.get(request.path))


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` (a new one by default) on 127.0.0.1, on a free port, until the block ends."""
    rec = receiver or Receiver()
    app = web.Application(client_max_size=16 << 20)  # whatever the product sends (its decoding cap is 8 MiB)
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()
