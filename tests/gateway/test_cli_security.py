"""The CLI and issue 17: user text printed as plain text, and `turbohooks audit` (run as a user runs them)."""

from __future__ import annotations

import getpass
import json
import subprocess

import pytest

from consumers import Engine, SubscriptionCreate
from streams import Settings
from tests.support import engine_cli_env, run_cli

from .conftest import Receiver


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return engine_cli_env(settings, columns=250)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


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
