"""The shared fixtures, registered for every test directory by ``tests/conftest.py``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from consumers import Engine, open_engine
from streams import Settings

from ._engine import Running, running_engine
from ._receiver import Receiver, serve_receiver

__all__ = ("engine", "receiver", "running", "unique")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.1, on a free port."""
    async with serve_receiver() as rec:
        yield rec


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[Engine]:
    """The engine on the session's NATS and a per-test SQLite file; its subscriptions are deleted after."""
    async with open_engine(settings, name="test") as eng:
        yield eng
        for sub in await eng.subscriptions.list(limit=1000):
            await eng.service.delete(sub.id)


@pytest.fixture
async def running(engine: Engine) -> AsyncIterator[Running]:
    """One worker and the recorder, running for the test."""
    async with running_engine(engine) as run:
        yield run


@pytest.fixture
def unique() -> str:
    """A short unique token for names, paths and entity ids."""
    return uuid.uuid4().hex[:10]
