"""Fixtures of the gateway tests: a real engine, the app under Litestar's test client, a receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from litestar import Litestar
from litestar.testing import AsyncTestClient

from consumers import Engine, Recorder, Worker, open_engine
from gateway import create_app
from streams import Settings, connect_nats

TOKEN = "test-admin-token-" + "x" * 16
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE_URL = "http://testserver.local"


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


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request and answers ``status``."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read()))
        status = self.statuses.get(request.path, 200)
        return web.Response(status=status, text=f"answer {status} " + "y" * 10_000)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
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
    async with open_engine(settings, name="gateway-test") as eng:
        yield eng
        for sub in await eng.subscriptions.list(limit=1000):
            await eng.service.delete(sub.id)


@pytest.fixture
def app(engine: Engine) -> Litestar:
    return create_app(engine, admin_token=TOKEN)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the app, sending the admin token.

    Litestar's ``AsyncTestClient`` runs the app on an event loop of its own, in
    another thread, where the engine's NATS connection (bound to the test's
    loop) cannot be used; httpx's ASGI transport calls the app on this loop.
    Routes that never reach the engine are also tested through ``AsyncTestClient``
    (see ``anonymous``).
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=AUTH) as http:
        yield http


@pytest.fixture
async def anonymous(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """Litestar's test client, without a token."""
    async with AsyncTestClient(app) as test_client:
        yield test_client


@dataclass
class Running:
    """A worker and the recorder running as tasks of the test."""

    worker: Worker
    recorder: Recorder


@pytest.fixture
async def running(engine: Engine) -> AsyncIterator[Running]:
    """A worker (with its own connection) and the recorder, stopped after the test."""
    stop = asyncio.Event()
    nc = await connect_nats(engine.settings, name="gateway-test-worker")
    worker = Worker(engine.settings, nc)
    recorder = Recorder(engine.settings, engine.nc, engine.deliveries, engine.service)
    tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(recorder.run(stop))]
    await wait_for(worker.ready.is_set, what="the worker to read the registry")
    try:
        yield Running(worker, recorder)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await nc.close()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


@pytest.fixture
def unique() -> str:
    """A short unique token for names, paths and entity ids."""
    return uuid.uuid4().hex[:10]


def new_subscription(url: str, name: str, **extra: Any) -> dict[str, Any]:
    """The body of a subscription create request."""
    return {"name": name, "url": url, "event_types": ["issue.*"], **extra}
