"""The CLI and issue 17: user text printed as plain text, and `turbohooks audit` (run as a user runs them)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consumers import Engine, SubscriptionCreate
from streams import Settings

from .conftest import Receiver

BIN = Path(sys.executable).parent / "turbohooks"


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "TURBOHOOKS_", "WEBHOOK_", "DATABASE_"))}
    return {
        **keep,
        "NATS_URL": settings.resolved_nats_url(),
        "TURBOHOOKS_DATA_DIR": str(settings.data_dir),
        "TURBOHOOKS_STREAM_MAX_BYTES": "1GiB",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "COLUMNS": "250",
    }


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_names_that_look_like_markup_are_listed_as_written(
    engine: Engine, receiver: Receiver, env: dict[str, str], unique: str
) -> None:
    name = f"[/x] [bold]{unique}[fd00::1]"
    await engine.service.create(SubscriptionCreate(name=name, url=receiver.url, event_types=["issue.*"]))
    listed = _cli("subscriptions", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout


def test_an_ipv6_address_in_an_error_is_shown(env: dict[str, str], unique: str) -> None:
    refused = _cli(
        "subscriptions", "create", "--name", unique, "--url", "https://[fd00::1]/hook", "--event-types", "*", env=env
    )
    assert refused.returncode == 2
    assert "[fd00::1] is a private address" in refused.stderr


def test_a_name_with_a_bidi_override_is_refused_naming_it(env: dict[str, str]) -> None:
    refused = _cli(
        "subscriptions",
        "create",
        "--name",
        "invoice\u202efdp.exe",
        "--url",
        "http://127.0.0.1:9/",
        "--event-types",
        "*",
        env=env,
    )
    assert refused.returncode == 2
    assert "U+202E" in refused.stderr and "\u202e" not in refused.stderr


async def test_turbohooks_audit_lists_the_cli_actions_as_the_local_user(
    engine: Engine, receiver: Receiver, env: dict[str, str], unique: str
) -> None:
    created = _cli(
        "subscriptions", "create", "--name", f"a-{unique}", "--url", receiver.url, "--event-types", "*", env=env
    )
    assert created.returncode == 0, created.stderr
    sid = json.loads(created.stdout)["id"]
    assert _cli("subscriptions", "delete", sid, env=env).returncode == 0
    shown = _cli("audit", "--target", f"subscription:{sid}", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)
    assert [e["action"] for e in entries] == ["delete", "create"]
    assert {e["actor"] for e in entries} == {f"local:{getpass.getuser()}"}
    assert json.loads(created.stdout)["secret"] not in shown.stdout
    table = _cli("audit", "--action", "create", env=env)
    assert table.returncode == 0 and f"subscription:{sid}" in table.stdout
