"""`turbohooks gateway`, `replay`, `subscriptions test|recover`, run as a user runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from consumers import Engine, SubscriptionCreate, verify
from gateway.cli import app
from streams import Settings
from tests.support import BIN, Receiver, Running, engine_cli_env, run_cli, wait_for


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """The environment of a CLI process using the test's NATS and data dir (so its database too)."""
    return engine_cli_env(settings, columns=200)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


def test_gateway_serves_prints_its_url_and_token_and_stops_on_sigint(env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [str(BIN), "gateway", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("admin token" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, (lines, process.stderr)
            lines.append(process.stdout.readline())
        output = "".join(lines)
        url = re.search(r"admin API on (http://\S+)", output)
        token = re.search(r"admin token \(new, stored in (\S+?);", output)
        assert url and token, output
        stored = (Path(env["TURBOHOOKS_DATA_DIR"]) / "admin-token").read_text().strip()
        # Issue 17: the path is printed, never the token (stdout ends up in logs).
        assert Path(token.group(1)) == Path(env["TURBOHOOKS_DATA_DIR"]) / "admin-token"
        assert stored not in output
        assert httpx.get(url.group(1) + "/health").json() == {"status": "ok"}
        assert httpx.get(url.group(1) + "/api/event-types").status_code == 401
        answer = httpx.get(
            url.group(1) + "/api/event-types?source=turbo", headers={"Authorization": f"Bearer {stored}"}
        )
        assert answer.json()["total"] == 59
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_gateway_refuses_a_taken_port(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("gateway", "--port", str(port), env=env)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


async def test_replay_lists_then_queues(engine: Engine, env: dict[str, str], unique: str) -> None:
    sub = await engine.service.create(
        SubscriptionCreate(name=f"cli-{unique}", url="http://127.0.0.1:9/x", event_types=["issue.*"])
    )
    acks = [
        await engine.publisher.emit(event_type=event_type, entity_id=unique)
        for event_type in ("issue.created", "comment.created", "issue.closed")
    ]
    window = ["--subscription", str(sub.id), "--from-seq", str(acks[0].seq), "--to-seq", str(acks[-1].seq)]

    dry = _cli("replay", *window, "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)
    assert [item["event_id"] for item in listed] == [str(acks[0].event_id), str(acks[2].event_id)]

    table = _cli("replay", *window, "--dry-run", "--event-type", "issue.closed", env=env)
    assert table.returncode == 0, table.stderr
    assert "issue.closed" in table.stdout and "1 events" in table.stdout and "nothing was queued" in table.stdout

    queued = _cli("replay", *window, env=env)
    assert queued.returncode == 0, queued.stderr
    assert f"queued 2 events for cli-{unique}" in queued.stdout


def test_replay_argument_errors(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # In process: these fail before (or just after) connecting, and a subprocess each costs a second.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    some = "00000000-0000-4000-8000-000000000000"
    for args, code, message in [
        (["--subscription", "nope", "--since", "1h"], 2, "--subscription"),
        (["--subscription", some], 2, "--since"),
        (["--subscription", some, "--since", "soon"], 2, "--since"),
        (["--subscription", some, "--since", "1h", "--from-seq", "3"], 2, "--from-seq"),
        (["--subscription", some, "--from-seq", "5", "--to-seq", "2"], 2, "--to-seq"),
        (["--subscription", some, "--since", "1h"], 1, "not found"),
    ]:
        result = CliRunner().invoke(app, ["replay", *args])
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


async def _cli_async(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # In a thread: the receiver answers on this test's event loop.
    return await asyncio.to_thread(_cli, *args, env=env)


async def test_subscriptions_test_prints_the_answer_and_fails_unless_2xx(
    engine: Engine, env: dict[str, str], receiver: Receiver, unique: str
) -> None:
    sub = await engine.service.create(
        SubscriptionCreate(name=f"cli-test-{unique}", url=receiver.url + "/t", event_types=["issue.*"])
    )
    sent = await _cli_async("subscriptions", "test", str(sub.id), env=env)
    assert sent.returncode == 0, sent.stderr
    assert f"issue.created to {receiver.url}/t: 200 in " in sent.stdout and "answer 200" in sent.stdout
    verify(sub.secret, receiver.at("/t")[0].headers, receiver.at("/t")[0].body)

    receiver.statuses["/t"] = 503
    refused = await _cli_async("subscriptions", "test", str(sub.id), "--json", env=env)
    assert refused.returncode == 1
    answer = json.loads(refused.stdout)
    assert answer["status"] == 503 and answer["success"] is False and answer["body"].startswith("answer 503")
    assert "did not answer 2xx" in refused.stderr and "Traceback" not in refused.stderr
    assert len(receiver.at("/t")) == 2
    assert not await engine.deliveries.list(subscription_id=sub.id), "a test send is not logged"


async def test_subscriptions_recover_queues_every_failed_delivery(
    engine: Engine, env: dict[str, str], running: Running, receiver: Receiver, unique: str
) -> None:
    receiver.statuses["/bad"] = 400  # a client error fails at once, no retries
    sub = await engine.service.create(
        SubscriptionCreate(name=f"cli-recover-{unique}", url=receiver.url + "/bad", event_types=["issue.*"])
    )
    await wait_for(lambda: sub.id in running.worker.running, what="the worker to start it")
    for event_type in ("issue.created", "issue.closed"):
        await engine.publisher.emit(event_type=event_type, entity_id=unique)

    async def failed() -> bool:
        rows = await engine.deliveries.list(subscription_id=sub.id, status="failed")
        return len(rows) == 2

    await wait_for(failed, what="two failed deliveries")
    receiver.statuses["/bad"] = 200
    recovered = await _cli_async("subscriptions", "recover", str(sub.id), "--since", "1h", env=env)
    assert recovered.returncode == 0, recovered.stderr
    assert f"queued 2 failed deliveries of subscription {sub.id}" in recovered.stdout

    async def succeeded() -> bool:
        rows = await engine.deliveries.list(subscription_id=sub.id, status="success")
        return len(rows) == 2

    await wait_for(succeeded, what="the recovered deliveries to succeed")
    again = await _cli_async("subscriptions", "recover", str(sub.id), "--since", "1h", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["queued"] == 0


async def test_recover_refuses_a_paused_subscription_by_the_one_rule(
    engine: Engine, env: dict[str, str], unique: str
) -> None:
    sub = await engine.service.create(
        SubscriptionCreate(name=f"cli-paused-{unique}", url="http://127.0.0.1:9/x", event_types=["issue.*"])
    )
    await engine.service.pause(sub.id)
    refused = await _cli_async("subscriptions", "recover", str(sub.id), "--since", "1h", env=env)
    assert refused.returncode == 1
    assert f"subscription {sub.id} is paused; resume it" in refused.stderr and "Traceback" not in refused.stderr


def test_test_and_recover_argument_errors(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    some = "00000000-0000-4000-8000-000000000000"
    for args, code, message in [
        (["test", "nope"], 2, "subscription id"),
        (["recover", some], 2, "--since"),
        (["recover", some, "--since", "soon"], 2, "--since"),
        (["recover", some, "--since", "1h"], 1, "not found"),
        (["test", some], 1, "not found"),
    ]:
        result = CliRunner().invoke(app, ["subscriptions", *args])
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


def test_an_unreachable_database_is_one_line_not_a_traceback(env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://turbohooks:secret@127.0.0.1:{port}/turbohooks"
    for args in (("subscriptions", "list"), ("subscriptions", "recover", str(uuid.uuid4()), "--since", "1h")):
        result = _cli(*args, env={**env, "DATABASE_URL": url})
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "database" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "secret" not in result.stderr, "the password is not printed"


def test_an_unreachable_nats_is_one_line_not_a_traceback(env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args in (("subscriptions", "test", str(uuid.uuid4())), ("deliveries", "retry", str(uuid.uuid4()))):
        result = _cli(*args, env={**env, "NATS_URL": f"nats://127.0.0.1:{port}"})
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "NATS" in result.stderr, result.stderr
