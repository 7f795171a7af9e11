"""The web UI's stack, one per module: nats-server, SQLite, a worker, the recorder, the gateway under
uvicorn on a free port, a real receiver; and one Chromium (the machine's, driven by Playwright) per session.

Playwright's own browser download does not work here: the browser is the machine's ``chromium``
(``.ci/run`` installs it when missing). Without it the UI tests are skipped, saying so (they fail in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from consumers import Engine, Recorder, Worker, open_engine
from gateway import serve_gateway
from streams import EmbeddedNats, Settings, connect_nats
from tests.support import wait_for

TOKEN = "ui-test-admin-token-" + "x" * 16
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "ui"

__all__ = ("ROOT", "SCREENSHOTS", "TOKEN", "Receiver", "Stack", "wait_for")


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 answering ``status`` (changeable) and counting what it got."""

    url: str = ""
    status: int = 200
    received: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        return web.json_response({"ok": self.status < 300, "seen": len(self.received)}, status=self.status)


@dataclass
class Stack:
    """The running product, as the browser sees it."""

    url: str
    engine: Engine
    receiver: Receiver
    api: httpx.AsyncClient
    """The admin API with the bearer token (what scripts use), to compare with what the UI shows."""


@pytest_asyncio.fixture(scope="module")
async def stack(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = Settings(
        nats_url=nats_server.url,
        data_dir=tmp_path_factory.mktemp("ui-data"),
        stream_max_bytes=1 << 30,
        publish_timeout=10.0,  # a loaded CI machine: JetStream answers slowly, not never
        publish_retry_horizon=5.0,
        webhook_timeout=5.0,
        webhook_retry_count=2,
        webhook_retry_delay=0.2,
        webhook_allow_http=True,
        webhook_allowed_hosts=("127.0.0.1", "localhost"),
    )
    receiver = Receiver()
    receiving = web.Application(client_max_size=16 << 20)  # the largest event the product sends (8 MiB cap)
    receiving.router.add_route("POST", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(receiving, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    stop = asyncio.Event()
    async with open_engine(settings, name="ui-test") as engine:
        nc = await connect_nats(settings, name="ui-test-worker")
        worker = Worker(settings, nc)
        recorder = Recorder(settings, engine.nc, engine.deliveries, engine.service)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        tasks = [
            asyncio.create_task(worker.run(stop)),
            asyncio.create_task(recorder.run(stop)),
            asyncio.create_task(
                serve_gateway(engine, host="127.0.0.1", port=0, admin_token=TOKEN, stop=stop, on_ready=ready.set_result)
            ),
        ]
        try:
            await wait_for(worker.ready.is_set, what="the worker to read the registry")
            url = await asyncio.wait_for(ready, 15)
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                yield Stack(url=url, engine=engine, receiver=receiver, api=api)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await nc.close()
            await runner.cleanup()


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """The machine's Chromium, headless, one for the whole session."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        missing = "no chromium on this machine: apt-get install -y chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs it: a skip there would hide a broken install step
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()
