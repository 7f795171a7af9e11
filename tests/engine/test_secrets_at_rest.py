"""Secrets at rest through the whole path (issue 17): the KV mirror, the worker, the log, a key rotation.

On SQLite and PostgreSQL: the KV bucket's values hold no secret in clear; the
worker decrypts them and delivers with the clear header and a signature the
receiver verifies; the recorded request masks the credential; `secrets
rotate-key` re-encrypts SQL and KV under a new key while a worker runs, and
deliveries before and after keep verifying with the subscription's secret.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import text

from consumers import (
    REGISTRY_BUCKET,
    Engine,
    SubscriptionCreate,
    SubscriptionRegistry,
    delivery_id_for,
    open_engine,
    verify,
)
from consumers.secrets import ENVELOPE_PREFIX, KEY_FILE, Keyring, mask, new_key
from gateway.cli._secrets import _rotate
from streams import Settings
from tests.support import Receiver, running_engine, wait_for

from ..consumers.conftest import postgres_database

AUTHORIZATION = "Bearer receiver-credential-at-rest-5e1d"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend_engine(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Engine]:
    """The engine on SQLite (the data dir's file) or on a fresh PostgreSQL database."""
    database: contextlib.AbstractAsyncContextManager[str | None] = (
        postgres_database() if request.param == "postgres" else contextlib.nullcontext(None)
    )
    async with database as url:
        configured = msgspec.structs.replace(settings, database_url=url)
        async with open_engine(configured, name="test-secrets") as engine:
            yield engine
            for sub in await engine.subscriptions.list(limit=100):
                await engine.service.delete(sub.id)


async def _kv_value(engine: Engine, subscription_id: uuid.UUID) -> bytes:
    kv = await engine.js.key_value(REGISTRY_BUCKET)
    entry = await kv.get(subscription_id.hex)
    assert entry.value
    return entry.value


async def _sql_text(engine: Engine, subscription_id: uuid.UUID) -> str:
    postgres = engine.db.dialect_name == "postgresql"
    async with engine.db.session() as session:
        row = (
            await session.execute(
                text("SELECT secret_token, CAST(headers AS TEXT) FROM webhook_subscriptions WHERE id = :id"),
                {"id": subscription_id if postgres else subscription_id.hex},
            )
        ).one()
    return " ".join(str(value) for value in row)


def _sqlite_bytes(engine: Engine) -> bytes:
    path = Path(engine.settings.resolved_database_url().removeprefix("sqlite+aiosqlite:///"))
    return b"".join(file.read_bytes() for file in (path, path.with_name(path.name + "-wal")) if file.exists())


async def test_kv_sealed_worker_delivers_log_masked_and_rotation_keeps_verifying(
    backend_engine: Engine, receiver: Receiver, unique: str
) -> None:
    engine = backend_engine
    async with running_engine(engine) as run:
        path = f"/secrets-{unique}"
        sub = await run.subscribe(
            name=f"secrets-{unique}",
            url=receiver.endpoint(path),
            event_types=["issue.*"],
            headers={"Authorization": AUTHORIZATION},
        )
        secret = sub.secret
        ring = engine.subscriptions.keyring
        first_key = ring.current_id

        # The KV mirror: no secret in clear, sealed under the current key.
        stored = await _kv_value(engine, sub.id)
        assert secret.encode() not in stored and AUTHORIZATION.encode() not in stored
        assert f"{ENVELOPE_PREFIX}{first_key}:".encode() in stored

        first = await engine.publisher.emit(event_type="issue.created", entity_id=unique, data={"current": {}})
        await wait_for(lambda: len(receiver.at(path)) == 1, what="the first delivery")
        got = receiver.at(path)[0]
        assert got.headers["Authorization"] == AUTHORIZATION, "the worker sends the clear value"
        verify(secret, got.headers, got.body)

        async def recorded(event_id: uuid.UUID) -> bool:
            try:
                detail = await engine.deliveries.get(delivery_id_for(sub.id, event_id))
            except KeyError:
                return False
            return detail.status == "success"

        await wait_for(lambda: recorded(first.event_id), what="the first delivery in the log")
        detail = await engine.deliveries.get(delivery_id_for(sub.id, first.event_id))
        headers = detail.attempt_log[-1].request_headers
        assert headers["Authorization"] == mask(AUTHORIZATION), "the recorded request masks the credential"
        # Signatures are kept: the recorded ones verify the body sent (PostgreSQL's JSONB re-encodes the payload).
        verify(secret, headers, got.body)
        assert secret not in await _sql_text(engine, sub.id)
        if engine.db.dialect_name == "sqlite":
            content = _sqlite_bytes(engine)
            assert secret.encode() not in content and AUTHORIZATION.encode() not in content

        # Rotate the key while the worker runs.
        await _rotate(engine.settings, 0.0)
        assert ring.current_id != first_key and ring.ids == (ring.current_id,)
        key_file = engine.settings.data_dir / KEY_FILE
        assert Keyring.from_file(key_file).ids == (ring.current_id,), "the old key is retired from the file"
        rotated = await _kv_value(engine, sub.id)
        assert f"{ENVELOPE_PREFIX}{ring.current_id}:".encode() in rotated and first_key.encode() not in rotated
        assert secret.encode() not in rotated
        in_sql = await _sql_text(engine, sub.id)
        assert f"{ENVELOPE_PREFIX}{ring.current_id}:" in in_sql and f":{first_key}:" not in in_sql
        assert await engine.subscriptions.stale_count() == 0 and await engine.registry.stale_count() == 0
        assert (await engine.service.get(sub.id)).secret == secret, "the signing secret itself is unchanged"

        second = await engine.publisher.emit(event_type="issue.updated", entity_id=unique, data={"current": {}})
        await wait_for(lambda: len(receiver.at(path)) == 2, what="a delivery after the rotation")
        after = receiver.at(path)[1]
        assert after.headers["Authorization"] == AUTHORIZATION
        verify(secret, after.headers, after.body)
        await wait_for(lambda: recorded(second.event_id), what="the second delivery in the log")
        old = await engine.deliveries.get(delivery_id_for(sub.id, first.event_id))
        verify(secret, old.attempt_log[-1].request_headers, got.body)  # old deliveries keep verifying


async def test_a_worker_without_the_key_runs_nothing_and_says_why(
    engine: Engine, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    sub = await engine.service.create(
        SubscriptionCreate(name=f"nokey-{unique}", url="http://127.0.0.1:9/x", event_types=["issue.*"])
    )
    kv = await engine.js.key_value(REGISTRY_BUCKET)
    stranger = SubscriptionRegistry(kv, Keyring([new_key()]))
    seen: list[uuid.UUID] = []
    async for change in stranger.watch():
        if change.initial_done:
            break
        if change.subscription is not None:
            seen.append(change.subscription.id)
    assert sub.id not in seen
    assert any("not run here" in r.getMessage() and "does not have" in r.getMessage() for r in caplog.records)


async def test_an_entry_under_a_key_this_process_lacks_is_left_as_it_is_by_a_rotation(
    engine: Engine, tmp_path: Path, unique: str
) -> None:
    """A KV entry sealed under another deployment's (or a lost) key cannot be re-encrypted here: it is
    left as it is and does not stop `secrets rotate-key` (it raised SecretKeyError and aborted)."""
    from datetime import UTC, datetime

    from consumers import Subscription, SubscriptionRegistry
    from consumers.secrets import is_foreign

    other = await SubscriptionRegistry.open(engine.js, engine.settings, Keyring([new_key()]))
    now = datetime.now(UTC)
    foreign = Subscription(
        id=uuid.uuid4(),
        name=f"foreign-{unique}",
        url="https://example.com/hook",
        event_types=["issue.*"],
        secret="whsec_" + "A" * 43 + "=",
        created_at=now,
        updated_at=now,
    )
    await other.put(foreign)
    try:
        ours = msgspec.structs.replace(engine.settings, data_dir=tmp_path / "ours")
        await _rotate(ours, 0.0)  # re-encrypts what it can, says nothing can be done for the foreign entry
        entry = await other._kv.get(foreign.id.hex)
        stored = msgspec.json.decode(entry.value or b"", type=Subscription)
        assert is_foreign(stored, Keyring([new_key()])) and stored.secret.startswith(ENVELOPE_PREFIX)
        assert (await other.get(foreign.id)) is not None, "still readable with its own key"
    finally:
        await other.delete(foreign.id)
