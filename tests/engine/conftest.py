"""Fixtures of the delivery engine tests: a real receiver, an engine, running workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import pytest
from aiohttp import web

from consumers import Engine, Recorder, Subscription, SubscriptionCreate, Worker, open_engine
from streams import Settings

Answer = Callable[["Received"], tuple[int, dict[str, str], str]]


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, object]:
        return msgspec.json.decode(self.body)  # type: ignore[no-any-return]

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


@dataclass
class Receiver:
    """A real HTTP server that records every request; each path answers as its script says."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    """Per path: the statuses to answer, in order; the last one repeats."""
    delays: dict[str, float] = field(default_factory=dict)
    extra_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def endpoint(self, path: str, statuses: list[int] | None = None, delay: float = 0.0) -> str:
        if statuses is not None:
            self.scripts[path] = list(statuses)
        if delay:
            self.delays[path] = delay
        return self.url + path

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = Received(request.path, dict(request.headers), body, time.monotonic())
        self.received.append(seen)
        self.arrived.set()
        if delay := self.delays.get(request.path):
            await asyncio.sleep(delay)
        script = self.scripts.get(request.path, [200])
        status = script.pop(0) if len(script) > 1 else script[0]
        return web.Response(status=status, text=f"answer {status}", headers=self.extra_headers.get(request.path))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.1, on a free port."""
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[Engine]:
    """The engine on the session's NATS and a per-test SQLite file; its subscriptions are deleted after."""
    async with open_engine(settings, name="test") as eng:
        yield eng
        for sub in await eng.subscriptions.list(limit=1000):
            await eng.service.delete(sub.id)


@dataclass
class Running:
    """Workers and a recorder running as tasks of the test."""

    engine: Engine
    workers: list[Worker]
    recorder: Recorder
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]

    async def subscribe(self, **fields: object) -> Subscription:
        """Create a subscription and wait until every worker runs its loop."""
        sub = await self.engine.service.create(SubscriptionCreate(**fields))  # type: ignore[arg-type]
        await wait_for(lambda: all(sub.id in w.running for w in self.workers), what="workers to pick it up")
        return sub


async def wait_for(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]], *, timeout: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_engine(engine: Engine, copies: int = 1, settings: Settings | None = None) -> AsyncIterator[Running]:
    """Run ``copies`` workers (each with its own NATS connection) and one recorder, with ``settings`` if given."""
    from streams import connect_nats

    settings = settings or engine.settings
    stop = asyncio.Event()
    connections = [await connect_nats(settings, name=f"test-worker-{i}") for i in range(copies)]
    workers = [Worker(settings, nc) for nc in connections]
    recorder = Recorder(settings, engine.nc, engine.deliveries, engine.service)
    tasks = [asyncio.create_task(w.run(stop)) for w in workers] + [asyncio.create_task(recorder.run(stop))]
    await wait_for(lambda: all(w.ready.is_set() for w in workers), what="workers to read the registry")
    try:
        yield Running(engine, workers, recorder, stop, tasks)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for nc in connections:
            await nc.close()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


@pytest.fixture
async def running(engine: Engine) -> AsyncIterator[Running]:
    """One worker and the recorder, running for the test."""
    async with running_engine(engine) as run:
        yield run


@pytest.fixture
def unique() -> str:
    """A short unique token for names and paths."""
    return uuid.uuid4().hex[:10]
