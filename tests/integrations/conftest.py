"""Fixtures of the integration tests: the services' fakes (the engine's are tests/support's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .fakes import FakeDiscord, FakeGitHub, FakeSlack, FakeSmtp, FakeZapier


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def zapier() -> AsyncIterator[FakeZapier]:
    fake = FakeZapier()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSmtp]:
    fake = FakeSmtp()
    await fake.start()
    yield fake
    await fake.stop()
