"""Secrets at rest (issue 17): sealed in SQL on SQLite and PostgreSQL, masked when shown, never in debug logs."""

from __future__ import annotations

import base64
import logging
import stat
import uuid
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import text

from consumers import Subscription, subscription_view
from consumers.log import SubscriptionStore
from consumers.log._database import Database
from consumers.secrets import (
    ENVELOPE_PREFIX,
    KEY_FILE,
    Keyring,
    SecretKeyError,
    is_credential_name,
    is_masked,
    is_secret_header,
    mask,
    mask_request_headers,
    new_key,
)
from streams import ConfigError, Settings
from streams.settings import load_config

from .conftest import sqlite_url
from .test_store import make_subscription

SECRET = "whsec_" + base64.b64encode(b"a signing secret of 32 bytes!!!!").decode()
PREVIOUS = "whsec_" + base64.b64encode(b"the previous signing secret 1234").decode()
AUTHORIZATION = "Bearer receiver-credential-7f3a9c"
TEAM = "team-header-value-abcdef"
GITHUB_TOKEN = "ghp_github-token-in-config-0042"


SIGNING_KEY = "whsk_" + base64.b64encode(b"an ed25519 seed of 32 bytes!!!!!").decode()
PREVIOUS_SIGNING_KEY = "whsk_" + base64.b64encode(b"the previous ed25519 seed 123456").decode()
TLS_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "-----END PRIVATE KEY-----\n"
)


def _secret_subscription() -> Subscription:
    return make_subscription(
        secret=SECRET,
        previous_secret=PREVIOUS,
        signing_key=SIGNING_KEY,
        previous_signing_key=PREVIOUS_SIGNING_KEY,
        tls_client_key=TLS_KEY,
        headers={"Authorization": AUTHORIZATION, "X-Team": TEAM},
        integration="github",
        integration_config={"repository": "acme/site", "token": GITHUB_TOKEN, "token_env": "GITHUB_TOKEN"},
    )


CLEAR = (SECRET, PREVIOUS, AUTHORIZATION, TEAM, GITHUB_TOKEN, SIGNING_KEY, PREVIOUS_SIGNING_KEY, "MC4CAQAwBQYDK2VwBCIE")


# --- the keyring


def test_envelope_round_trip_and_key_ids() -> None:
    ring = Keyring([new_key()])
    sealed = ring.encrypt("hello")
    assert sealed.startswith(f"{ENVELOPE_PREFIX}{ring.current_id}:") and "hello" not in sealed
    assert ring.encrypt("hello") != sealed, "a new nonce per value"
    assert ring.decrypt(sealed) == "hello"
    assert ring.decrypt("clear text of an earlier release") == "clear text of an earlier release"
    assert ring.encrypt(sealed) == sealed, "sealing is idempotent"


def test_several_keys_coexist_and_a_missing_key_is_one_clear_error() -> None:
    old, new = new_key(), new_key()
    before = Keyring([old]).encrypt("x")
    both = Keyring([new, old])
    assert both.decrypt(before) == "x" and not both.is_current(before) and both.is_current(both.encrypt("x"))
    with pytest.raises(SecretKeyError, match="does not have") as caught:
        Keyring([new]).decrypt(before)
    assert "\n" not in str(caught.value)
    damaged = before[:-4] + ("AAAA" if not before.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretKeyError, match="damaged"):
        Keyring([old]).decrypt(damaged)


def test_key_file_generated_0600_in_a_0700_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # what an earlier release left
    ring = Keyring.from_settings(Settings(data_dir=data))
    key_file = data / KEY_FILE
    assert ring.path == key_file.resolve()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    again = Keyring.from_file(key_file)
    assert again.ids == ring.ids and again.decrypt(ring.encrypt("s")) == "s", "the processes of a data dir share it"


def test_a_file_ring_follows_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    running = Keyring.from_file(path, create=True)
    rotating = Keyring.from_file(path)
    rotating.add_current(new_key())
    sealed_new = rotating.encrypt("after")
    assert running.decrypt(sealed_new) == "after", "a key id it lacks makes it re-read the file"
    assert running.is_current(running.encrypt("mine")), "and it encrypts under the new key"
    assert running.current_id == rotating.current_id


def test_secret_key_setting(tmp_path: Path) -> None:
    key = base64.b64encode(new_key()).decode()
    other = base64.b64encode(new_key()).decode()
    settings = load_config({"TURBOHOOKS_SECRET_KEY": f"{key}, {other}"}).role(Settings, data_dir=tmp_path)
    ring = Keyring.from_settings(settings)
    assert ring.path is None and len(ring.ids) == 2
    assert not (tmp_path / KEY_FILE).exists(), "no key file with the variable"
    for bad in ("not base64!", base64.b64encode(b"short").decode(), f"{key},zz"):
        with pytest.raises(ConfigError) as caught:
            load_config({"TURBOHOOKS_SECRET_KEY": bad})
        message = str(caught.value)
        assert message.startswith("turbohooks: setting TURBOHOOKS_SECRET_KEY:") and "\n" not in message
        assert bad not in message, "the value (a key) is never repeated"


# --- masking


def test_mask_shows_the_last_four_characters_of_long_values_only() -> None:
    assert mask(SECRET) == f"whsec_…{SECRET[-4:]}"
    assert mask(AUTHORIZATION) == f"…{AUTHORIZATION[-4:]}"
    assert mask("short") == "…", "a short value shows none of itself"
    assert is_masked(mask(SECRET)) and is_masked(mask(TEAM)) and not is_masked(TEAM)
    for name in ("Authorization", "X-Api-Key", "x-auth-token", "token", "client_secret", "password", "api_key"):
        assert is_credential_name(name), name
    for name in ("token_env", "repository", "labels", "X-Team", "link_template", "author"):
        assert not is_credential_name(name), name
    for name in ("X-Signature", "X-Monkey-Key", "X-Session", "Proxy-Authorization", "X-Password"):
        assert is_secret_header(name), name
    assert not is_secret_header("X-Team") and not is_secret_header("X-Tenant")
    recorded = mask_request_headers(
        {
            "X-Team": TEAM,
            "X-Signature": AUTHORIZATION,
            "Authorization": AUTHORIZATION,
            "webhook-signature": "v1,abc",
            "webhook-id": "msg_1",
        },
        {"X-Team": TEAM, "X-Signature": AUTHORIZATION},
    )
    assert recorded == {
        "X-Team": TEAM,
        "X-Signature": mask(AUTHORIZATION),
        "Authorization": mask(AUTHORIZATION),
        "webhook-signature": "v1,abc",
        "webhook-id": "msg_1",
    }, "turbohooks' own signatures stay, a static custom one is masked"


def test_the_view_masks_every_secret_but_in_the_create_and_rotate_answers() -> None:
    sub = _secret_subscription()
    view = msgspec.json.encode(subscription_view(sub)).decode()
    for clear in (SECRET, PREVIOUS, AUTHORIZATION, GITHUB_TOKEN):
        assert clear not in view
    shown = msgspec.json.decode(view)
    assert shown["secret_hint"] == mask(SECRET) and "secret" not in shown
    assert shown["headers"] == {"Authorization": mask(AUTHORIZATION), "X-Team": TEAM}, "X-Team is configuration"
    assert shown["integration_config"]["token"] == mask(GITHUB_TOKEN)
    assert shown["integration_config"]["token_env"] == "GITHUB_TOKEN" and shown["integration_config"]["repository"]
    once = subscription_view(sub, with_secret=True)
    assert once.secret == SECRET and once.headers["Authorization"] == AUTHORIZATION


# --- SQL, on both backends


async def test_secrets_are_sealed_in_sql_and_read_back_in_clear(db: Database) -> None:
    store = SubscriptionStore(db)
    created = await store.create(_secret_subscription())
    assert created.secret == SECRET and created.previous_secret == PREVIOUS
    assert created.headers == {"Authorization": AUTHORIZATION, "X-Team": TEAM}
    assert created.integration_config["token"] == GITHUB_TOKEN
    assert (created.signing_key, created.previous_signing_key, created.tls_client_key) == (
        SIGNING_KEY,
        PREVIOUS_SIGNING_KEY,
        TLS_KEY,
    )
    assert (await store.list())[0].headers["X-Team"] == TEAM
    async with db.session() as session:
        row = (
            await session.execute(
                text(
                    "SELECT secret_token, previous_secret, CAST(headers AS TEXT), CAST(integration_config AS TEXT),"
                    " signing_key, previous_signing_key, tls_client_key FROM webhook_subscriptions WHERE id = :id"
                ),
                {"id": created.id if db.dialect_name == "postgresql" else created.id.hex},
            )
        ).one()
    stored = " ".join(str(value) for value in row)
    for clear in CLEAR:
        assert clear not in stored
    assert row[0].startswith(ENVELOPE_PREFIX) and row[1].startswith(ENVELOPE_PREFIX)
    assert "GITHUB_TOKEN" in stored and "acme/site" in stored, "only the secrets are sealed"


_CLEAR_UPDATE = "UPDATE webhook_subscriptions SET secret_token = :secret, previous_secret = NULL, headers = :headers"
_CLEAR_UPDATE_PG = _CLEAR_UPDATE + " ::jsonb WHERE id = :id"
_CLEAR_UPDATE += " WHERE id = :id"


async def test_clear_rows_of_an_earlier_release_are_sealed_on_start(db: Database) -> None:
    ring = Keyring([new_key()])
    store = SubscriptionStore(db, ring)
    created = await store.create(_secret_subscription())
    headers = msgspec.json.encode({"Authorization": AUTHORIZATION}).decode()
    async with db.transaction() as session:  # as an earlier release wrote it
        statement = _CLEAR_UPDATE_PG if db.dialect_name == "postgresql" else _CLEAR_UPDATE
        await session.execute(
            text(statement),
            {
                "secret": SECRET,
                "headers": headers,
                "id": created.id if db.dialect_name == "postgresql" else created.id.hex,
            },
        )
    assert (await store.get(created.id)).secret == SECRET, "clear text of an earlier release is read as is"
    assert await store.stale_count() == 1
    assert await store.reseal() == 1
    assert await store.reseal() == 0, "idempotent"
    assert await store.stale_count() == 0
    again = await store.get(created.id)
    assert again.secret == SECRET and again.headers == {"Authorization": AUTHORIZATION}


async def test_debug_logging_never_prints_a_secret(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with Database(database_url, echo=True) as database:
        store = SubscriptionStore(database, Keyring([new_key()]))
        sub = await store.create(_secret_subscription())
        await store.update(msgspec.structs.replace(sub, name=f"renamed-{uuid.uuid4().hex[:6]}"))
        await store.get(sub.id)
        await store.delete(sub.id)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "INSERT INTO webhook_subscriptions" in logged, "the statements are logged"
    for clear in CLEAR:
        assert clear not in logged
    assert ENVELOPE_PREFIX not in logged, "nor the parameters at all"


# --- the SQLite files


async def test_sqlite_file_and_wal_hold_no_secret_and_are_private(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    path = Path(url.removeprefix("sqlite+aiosqlite:///"))
    async with Database(url) as database:
        store = SubscriptionStore(database, Keyring([new_key()]))
        sub = await store.create(_secret_subscription())
        await store.update(msgspec.structs.replace(sub, previous_secret=SECRET))
        wal = path.with_name(path.name + "-wal")
        shm = path.with_name(path.name + "-shm")
        assert wal.exists() and wal.stat().st_size > 0, "the WAL is checked while it holds the writes"
        files = [path, wal, shm]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
            content = file.read_bytes()
            for clear in CLEAR:
                assert clear.encode() not in content, (file, clear)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_readable_sqlite_files_of_an_earlier_release_become_private(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    path = Path(url.removeprefix("sqlite+aiosqlite:///"))
    async with Database(url):
        pass
    path.chmod(0o644)
    async with Database(url):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
