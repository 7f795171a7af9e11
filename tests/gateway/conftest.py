"""Fixtures of the gateway tests: the app under Litestar's test client (the engine's are tests/support's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from consumers import Engine
from gateway import create_app
from streams.settings import GatewaySettings
from tests.support import Receiver, serve_receiver

TOKEN = "test-admin-token-" + "x" * 16
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE_URL = "http://testserver.local"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """The shared receiver, its answers padded past the delivery log's cap (to see them truncated)."""
    async with serve_receiver(Receiver(padding=10_000)) as rec:
        yield rec


@pytest.fixture
def app(engine: Engine) -> Litestar:
    return create_app(engine, admin_token=TOKEN, gateway=GatewaySettings())


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


def new_subscription(url: str, name: str, **extra: Any) -> dict[str, Any]:
    """The body of a subscription create request."""
    return {"name": name, "url": url, "event_types": ["issue.*"], **extra}
