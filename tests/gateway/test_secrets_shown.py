"""Secrets masked wherever a subscription is shown (issue 17): the API, `subscriptions show`, `list --json`."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from consumers import Engine
from consumers.secrets import KEY_FILE, Keyring, mask, new_key
from streams import Settings
from tests.support import engine_cli_env, run_cli_async

AUTHORIZATION = "Bearer receiver-credential-shown-9b2c"
API_KEY = "x-api-key-value-0123456789"
GITHUB_TOKEN = "ghp_a-github-token-of-the-config-77"


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """A CLI process on the test's NATS and data dir (its database and key file)."""
    return engine_cli_env(settings, columns=200)


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await run_cli_async(*args, env=env)


async def _create_both(client: httpx.AsyncClient, unique: str) -> tuple[dict[str, object], dict[str, object]]:
    hook = await client.post(
        "/api/subscriptions",
        json={
            "name": f"masked-{unique}",
            "url": "http://127.0.0.1:9/hook",
            "event_types": ["issue.*"],
            "headers": {"Authorization": AUTHORIZATION, "X-Api-Key": API_KEY},
        },
    )
    github = await client.post(
        "/api/subscriptions",
        json={
            "name": f"masked-gh-{unique}",
            "url": "https://github.com/acme/site",
            "event_types": ["issue.*"],
            "integration": "github",
            # A local API (this machine resolves no public name: the API URL is checked at save).
            "integration_config": {
                "repository": "acme/site",
                "token": GITHUB_TOKEN,
                "api_url": "http://127.0.0.1:9/api",
            },
        },
    )
    assert hook.status_code == 201 and github.status_code == 201, (hook.text, github.text)
    return hook.json(), github.json()


def _assert_masked(text: str, secret: str) -> None:
    for clear in (secret, AUTHORIZATION, API_KEY, GITHUB_TOKEN):
        assert clear not in text, clear


async def test_api_answers_mask_every_secret(client: httpx.AsyncClient, unique: str) -> None:
    hook, github = await _create_both(client, unique)
    assert hook["secret"] and hook["headers"] == {"Authorization": AUTHORIZATION, "X-Api-Key": API_KEY}, (
        "the create answer carries the secrets, once"
    )
    secret = str(hook["secret"])
    listed = await client.get("/api/subscriptions")
    one = await client.get(f"/api/subscriptions/{hook['id']}")
    gh = await client.get(f"/api/subscriptions/{github['id']}")
    for answer in (listed, one, gh):
        assert answer.status_code == 200
        _assert_masked(answer.text, secret)
    shown = one.json()
    assert shown["headers"] == {"Authorization": mask(AUTHORIZATION), "X-Api-Key": mask(API_KEY)}
    assert shown["secret_hint"] == mask(secret) and shown["secret_hint"].startswith("whsec_…")
    assert gh.json()["integration_config"]["token"] == mask(GITHUB_TOKEN)
    assert gh.json()["integration_config"]["repository"] == "acme/site"


async def test_a_masked_value_sent_back_keeps_the_stored_one(
    client: httpx.AsyncClient, engine: Engine, unique: str
) -> None:
    hook, github = await _create_both(client, unique)
    shown = (await client.get(f"/api/subscriptions/{hook['id']}")).json()
    changed = await client.patch(
        f"/api/subscriptions/{hook['id']}", json={"headers": {**shown["headers"], "X-Team": "core"}}
    )
    assert changed.status_code == 200, changed.text
    stored = await engine.service.get(uuid.UUID(changed.json()["id"]))
    assert stored.headers == {"Authorization": AUTHORIZATION, "X-Api-Key": API_KEY, "X-Team": "core"}
    config = (await client.get(f"/api/subscriptions/{github['id']}")).json()["integration_config"]
    patched = await client.patch(
        f"/api/subscriptions/{github['id']}", json={"integration_config": {**config, "labels": ["turbo"]}}
    )
    assert patched.status_code == 200, patched.text
    assert (await engine.service.get(uuid.UUID(patched.json()["id"]))).integration_config["token"] == GITHUB_TOKEN


async def test_cli_show_and_list_json_mask_every_secret(
    client: httpx.AsyncClient, env: dict[str, str], unique: str
) -> None:
    hook, github = await _create_both(client, unique)
    secret = str(hook["secret"])
    shown = await _cli("subscriptions", "show", str(hook["id"]), env=env)
    listed = await _cli("subscriptions", "list", "--json", env=env)
    gh = await _cli("subscriptions", "show", str(github["id"]), env=env)
    for result in (shown, listed, gh):
        assert result.returncode == 0, result.stderr
        _assert_masked(result.stdout + result.stderr, secret)
    assert json.loads(shown.stdout)["headers"]["Authorization"] == mask(AUTHORIZATION)
    assert json.loads(gh.stdout)["integration_config"]["token"] == mask(GITHUB_TOKEN)
    items = json.loads(listed.stdout)
    assert {item["secret_hint"] for item in items} >= {mask(secret)}


async def test_cli_rotate_key_with_the_key_file_and_with_the_variable(
    client: httpx.AsyncClient, engine: Engine, env: dict[str, str], unique: str
) -> None:
    hook, _ = await _create_both(client, unique)
    key_file = Path(env["TURBOHOOKS_DATA_DIR"]) / KEY_FILE
    before = Keyring.from_file(key_file).ids
    status = await _cli("secrets", "status", env=env)
    assert status.returncode == 0 and before[0] in status.stdout, status.stderr
    rotated = await _cli("secrets", "rotate-key", "--settle", "0", env=env)
    assert rotated.returncode == 0, rotated.stderr
    after = Keyring.from_file(key_file).ids
    assert len(after) == 1 and after != before and f"retired key(s) {before[0]}" in rotated.stdout
    shown = await _cli("subscriptions", "show", str(hook["id"]), env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["secret_hint"] == mask(str(hook["secret"]))
    status = await _cli("secrets", "status", env=env)
    assert "0 in SQL, 0 in the KV mirror" in status.stdout, status.stdout

    # TURBOHOOKS_SECRET_KEY: the operator's keys; NEW,OLD re-encrypts under NEW, then NEW alone reads all.
    old = key_file.read_text().split()[-1]
    new = base64.b64encode(new_key()).decode()
    alone = await _cli("secrets", "rotate-key", env={**env, "TURBOHOOKS_SECRET_KEY": old})
    assert alone.returncode == 2 and "NEW,OLD" in alone.stderr and old not in alone.stderr + alone.stdout
    both = await _cli("secrets", "rotate-key", env={**env, "TURBOHOOKS_SECRET_KEY": f"{new},{old}"})
    assert both.returncode == 0 and "remove key(s)" in both.stdout, both.stderr
    only_new = await _cli("subscriptions", "show", str(hook["id"]), env={**env, "TURBOHOOKS_SECRET_KEY": new})
    assert only_new.returncode == 0, only_new.stderr
    assert json.loads(only_new.stdout)["secret_hint"] == mask(str(hook["secret"]))
    bad = await _cli("subscriptions", "list", env={**env, "TURBOHOOKS_SECRET_KEY": "nope"})
    assert bad.returncode == 2 and "TURBOHOOKS_SECRET_KEY" in bad.stderr and "Traceback" not in bad.stderr
    back = await _cli("secrets", "rotate-key", env={**env, "TURBOHOOKS_SECRET_KEY": f"{old},{new}"})
    assert back.returncode == 0, back.stderr
    assert (await engine.service.get(uuid.UUID(str(hook["id"])))).secret == hook["secret"], "the key file's key again"
