"""`turbohooks dead-letters list | show | redrive`, run as a user runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest

from consumers import Engine, SubscriptionCreate
from gateway.operations import list_dead_letters
from streams import Settings
from tests.support import Receiver, Running, engine_cli_env, run_cli_async, wait_for


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """A CLI process's environment: the test's NATS and data dir (so its database too)."""
    return engine_cli_env(settings, columns=250)


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await run_cli_async(*args, env=env)


async def test_list_show_and_redrive_from_the_cli(
    env: dict[str, str], engine: Engine, running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/cli-{unique}"
    receiver.statuses[path] = 400  # refused by the receiver: dead after one attempt
    sub = await engine.service.create(
        SubscriptionCreate(name=f"cli-{unique}", url=receiver.url + path, event_types=["issue.*"])
    )
    await wait_for(lambda: sub.id in running.worker.running, what="the worker to start it")
    failed = await engine.publisher.emit(event_type="issue.created", entity_id=unique)
    # A type that is rich markup: printed as it is, never interpreted (nor crashing the table).
    odd = (
        b'{"event_id":"' + str(uuid.uuid4()).encode() + b'","event_type":"[/nope] [bold]x",'
        b'"timestamp":"2024-05-01T12:00:00Z","entity_type":"issue","entity_id":"1","action":"created"}'
    )
    await engine.js.publish("turbo.issue.created", odd)

    async def both() -> bool:
        return len((await list_dead_letters(engine, subscription_id=sub.id)).items) == 2

    await wait_for(both, what="two dead letters")
    # Reading commands side by side (each CLI process opens the engine: seconds on a loaded machine).
    listed, text, only = await asyncio.gather(
        _cli("dead-letters", "list", "--subscription", str(sub.id), "--json", env=env),
        _cli("dead-letters", "list", "--subscription", str(sub.id), env=env),
        _cli("dead-letters", "list", "--subscription", str(sub.id), "--cause", "refused", "--json", env=env),
    )
    letters = {item["cause"]: item for item in json.loads(listed.stdout)["items"]}
    assert letters["delivery_failed"]["event"]["event_id"] == str(failed.event_id)
    assert letters["delivery_failed"]["last_attempt"]["response_code"] == 400
    assert "[/nope] [bold]x" in letters["refused"]["reason"]
    assert text.returncode == 0, text.stderr
    assert "[/nope] [bold]x" in text.stdout and "delivery_failed" in text.stdout and "refused" in text.stdout
    assert [i["seq"] for i in json.loads(only.stdout)["items"]] == [letters["refused"]["seq"]]

    shown, still = await asyncio.gather(
        _cli("dead-letters", "show", str(letters["refused"]["seq"]), env=env),
        _cli("dead-letters", "redrive", str(letters["refused"]["seq"]), env=env),
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == letters["refused"]
    assert still.returncode == 1 and "still refused" in still.stderr and "Traceback" not in still.stderr
    assert "[/nope] [bold]x" in still.stderr

    receiver.statuses[path] = 200
    redriven = await _cli("dead-letters", "redrive", str(letters["delivery_failed"]["seq"]), env=env)
    assert redriven.returncode == 0, redriven.stderr
    assert f"queued dead letter {letters['delivery_failed']['seq']}" in redriven.stdout
    await wait_for(lambda: len(receiver.at(path)) == 2, what="the redriven delivery")
    assert json.loads(receiver.at(path)[-1].body)["event_id"] == str(failed.event_id)

    everything = await _cli("dead-letters", "redrive", "--subscription", sub.name, "--json", env=env)
    assert everything.returncode == 0, everything.stderr
    summary = json.loads(everything.stdout)
    assert summary["queued"] == 0 and summary["refused"] == 1
    assert summary["refusals"][0]["seq"] == letters["refused"]["seq"]

    for args, code, said in [
        (("dead-letters", "redrive"), 2, "either SEQ or --subscription"),
        (("dead-letters", "list", "--cause", "nope"), 2, "--cause"),
        (("dead-letters", "list", "--subscription", "no such name!"), 2, "--subscription"),
    ]:
        answer = await _cli(*args, env=env)
        assert answer.returncode == code and said in answer.stderr, (args, answer.stderr)
