"""Claude: the sending side through the engine, and ``turbohooks claude-server`` running a stand-in for Claude Code."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from consumers import build_headers, consumer_name, ensure_env_subscriptions, generate_secret
from integrations import ClaudeRun, ClaudeServer, ClaudeServerConfig, reply_event
from streams import ConfigError, Event, build_event, decode_event, encode_event
from streams.settings import EnvSubscriptionSettings
from tests.support import Running, cli_env, wait_for

# The stand-in for `claude -p`: reads the prompt, obeys an order in the comment, answers on stdout.
STAND_IN = """
import os, re, sys, time
prompt = sys.stdin.read()
print(f"pid {os.getpid()}", flush=True)
order = re.search(r"(SLEEP [0-9.]+|EXIT [0-9]+|HANG)", prompt)
order = order.group(1) if order else ""
if order.startswith("SLEEP"):
    time.sleep(float(order.split()[1]))
if order == "HANG":
    time.sleep(60)
print(f"Looked at issue {os.environ['TURBO_ISSUE_ID']} for event {os.environ['TURBO_CAUSATION_ID']}.")
print("prompt mentions the comment:", "<comment>" in prompt)
sys.exit(int(order.split()[1]) if order.startswith("EXIT") else 0)
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "claude_stand_in.py"
    script.write_text(STAND_IN)
    return (sys.executable, str(script))


@pytest.fixture
def secret() -> str:
    return generate_secret()


@pytest.fixture
def make_server(tmp_path: Path, stand_in: tuple[str, ...], secret: str) -> Callable[..., ClaudeServer]:
    def make(publish: Callable[[Event], Any] | None = None, **overrides: Any) -> ClaudeServer:
        config = ClaudeServerConfig(
            secrets=(secret,), command=stand_in, port=0, data_dir=tmp_path / "data", **overrides
        )
        return ClaudeServer(config, publish=publish)

    return make


@pytest.fixture
async def server(make_server: Callable[..., ClaudeServer]) -> AsyncIterator[ClaudeServer]:
    async with make_server(timeout=10.0) as srv:
        yield srv


def comment(text: str, issue: str = "issue-1", actor_type: str = "user") -> Event:
    return build_event(
        event_type="comment.created",
        entity_id=f"c-{uuid.uuid4().hex[:6]}",
        data={"current": {"content": text, "issue_id": issue}},
        context={"issue_id": issue, "project_id": "p-1"},
        actor={"type": actor_type, "name": "ada@example.com"},
    )


async def post(server: ClaudeServer | str, event: Event, secret: str, webhook_id: str | None = None) -> tuple[int, Any]:
    """POST ``event`` signed with ``secret``, as the worker does; the answer's status and JSON."""
    url = server if isinstance(server, str) else server.url
    body = encode_event(event)
    headers = build_headers(
        msg_id=webhook_id or uuid.uuid4().hex,
        timestamp=int(time.time()),
        body=body,
        secrets=[secret],
        event_type=event.event_type,
        event_id=event.event_id,
        event_time=event.timestamp,
        source="/turbo",
        user_agent="test",
    )
    async with aiohttp.ClientSession() as http, http.post(url + "/webhook/comment", data=body, headers=headers) as r:
        return r.status, await r.json()


async def finished(server: ClaudeServer, count: int) -> list[ClaudeRun]:
    async def done() -> bool:
        return sum(r.status not in ("queued", "running") for r in server.runs.values()) >= count

    await wait_for(done, what=f"{count} finished run(s)")
    return list(server.runs.values())


async def test_a_run_records_output_and_exit_status(server: ClaudeServer, secret: str) -> None:
    ok, failing = comment("please look"), comment("EXIT 3", issue="issue-2")
    assert (await post(server, ok, secret))[0] == 202
    assert (await post(server, failing, secret))[0] == 202
    runs = {r.event_id: r for r in await finished(server, 2)}
    good, bad = runs[str(ok.event_id)], runs[str(failing.event_id)]
    assert (good.status, good.exit_code) == ("succeeded", 0)
    assert f"Looked at issue issue-1 for event {ok.event_id}." in good.output
    assert "prompt mentions the comment: True" in good.output
    assert (bad.status, bad.exit_code) == ("failed", 3)
    async with aiohttp.ClientSession() as http, http.get(server.url + "/runs?issue=issue-2") as r:
        listed = (await r.json())["runs"]
    assert [run["run_id"] for run in listed] == [bad.run_id]
    lines = (server.config.log_path).read_text().splitlines()
    assert [msgspec.json.decode(line)["status"] for line in lines if bad.run_id in line] == [
        "queued",
        "running",
        "failed",
    ]


async def test_a_bad_signature_is_401_and_runs_nothing(server: ClaudeServer) -> None:
    status, answer = await post(server, comment("hi"), generate_secret())
    assert status == 401 and "signature" in answer["error"]
    async with aiohttp.ClientSession() as http, http.post(server.url + "/webhook", data=b"{}") as r:
        assert r.status == 401
    assert server.runs == {}


async def test_ai_events_and_redeliveries_start_no_run(server: ClaudeServer, secret: str) -> None:
    status, answer = await post(server, comment("mine", actor_type="ai"), secret)
    assert status == 200 and "AI" in answer["skipped"]
    event = comment("once")
    first = await post(server, event, secret, webhook_id="msg_same")
    again = await post(server, event, secret, webhook_id="msg_same")
    assert first[0] == 202 and again == (200, {"duplicate": True, "run_id": first[1]["run_id"]})
    await finished(server, 1)
    assert len(server.runs) == 1


async def test_a_probe_of_turbohooks_is_answered_and_starts_no_run(server: ClaudeServer, secret: str) -> None:
    """Self-healing: a disabled Claude subscription's probe gets its 2xx, and Claude is not woken for it."""
    probe = build_event(event_type="system.subscription_probe", entity_id=str(uuid.uuid4()))
    assert await post(server, probe, secret) == (200, {"probe": "ok"})
    assert len(server.runs) == 0


async def test_one_run_per_issue_at_a_time(server: ClaudeServer, secret: str) -> None:
    a1, a2, b1 = comment("SLEEP 0.6", "issue-a"), comment("SLEEP 0.1", "issue-a"), comment("SLEEP 0.1", "issue-b")
    for event in (a1, a2, b1):
        assert (await post(server, event, secret))[0] == 202
    runs = {r.event_id: r for r in await finished(server, 3)}
    first, second, other = runs[str(a1.event_id)], runs[str(a2.event_id)], runs[str(b1.event_id)]
    assert first.finished_at and second.started_at and other.started_at
    assert second.started_at >= first.finished_at, "the issue's second event waited for its first"
    assert other.started_at < first.finished_at, "another issue did not wait"


async def test_a_hung_run_is_killed(make_server: Callable[..., ClaudeServer], secret: str) -> None:
    async with make_server(timeout=0.5, kill_grace=0.2) as srv:
        started = time.monotonic()
        assert (await post(srv, comment("HANG"), secret))[0] == 202
        (run,) = await finished(srv, 1)
    assert time.monotonic() - started < 5
    assert run.status == "timeout" and run.exit_code is not None and run.exit_code < 0
    pid = int(run.output.split()[1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_restart_marks_unfinished_runs_interrupted(
    make_server: Callable[..., ClaudeServer], secret: str, tmp_path: Path
) -> None:
    async with make_server(timeout=10.0) as srv:
        assert (await post(srv, comment("SLEEP 30"), secret))[0] == 202
        await wait_for(lambda: any(r.status == "running" for r in srv.runs.values()), what="the run to start")
    async with make_server() as again:
        (run,) = again.runs.values()
        assert run.status == "interrupted"


def test_server_config_names_a_bad_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        ClaudeServerConfig.from_env({})
    assert caught.value.variable == "CLAUDE_WEBHOOK_SECRET"
    with pytest.raises(ConfigError) as caught:
        ClaudeServerConfig.from_env({"CLAUDE_WEBHOOK_SECRET": generate_secret(), "CLAUDE_TIMEOUT": "soon"})
    assert caught.value.variable == "CLAUDE_TIMEOUT"
    config = ClaudeServerConfig.from_env(
        {"CLAUDE_WEBHOOK_SECRET": generate_secret(), "CLAUDE_COMMAND": "claude -p --model sonnet"}
    )
    assert config.command == ("claude", "-p", "--model", "sonnet") and config.timeout == 600


def test_the_reply_event_never_wakes_claude() -> None:
    trigger = comment("please fix")
    reply = reply_event(trigger, "Fixed in abc123")
    assert reply.actor.type == "ai" and reply.causation_id == trigger.event_id
    assert reply.context.issue_id == "issue-1" and reply.data.current["content"] == "Fixed in abc123"
    assert reply_event(trigger, "again").event_id == reply.event_id, "a retried reply is stored once"


async def test_the_whole_loop_through_the_engine(
    running: Running, make_server: Callable[..., ClaudeServer], secret: str, unique: str
) -> None:
    engine = running.engine
    async with make_server(publish_replies=True, publish=engine.publisher.publish) as srv:
        (sub,) = await ensure_env_subscriptions(
            engine.service,
            EnvSubscriptionSettings.from_env(
                {"CLAUDE_WEBHOOK_URL": srv.url + "/webhook/comment", "CLAUDE_WEBHOOK_SECRET": secret}
            ),
        )
        assert sub.integration == "claude" and sub.secret == secret
        await wait_for(lambda: sub.id in running.workers[0].running, what="the worker to run it")

        trigger = comment(f"What breaks the login? {unique}", issue=f"issue-{unique}")
        await engine.publisher.publish(trigger)
        (run,) = await finished(srv, 1)
        assert run.status == "succeeded" and run.reply_event_id is not None
        assert str(trigger.event_id) in run.output

        # The reply is in the stream, as the AI, caused by the trigger...
        stored = await engine.js.get_last_msg(engine.settings.stream_name, "turbo.comment.created")
        reply = decode_event(stored.data or b"")
        assert str(reply.event_id) == run.reply_event_id
        assert reply.actor.type == "ai" and reply.causation_id == trigger.event_id
        # ...carrying the delivery's causation chain: one deep, caused by the Claude subscription...
        assert reply.chain is not None and (reply.chain.depth, reply.chain.subscription_id) == (1, sub.id)

        # ...and the worker passed over it (acknowledged, nothing sent): no second run.
        async def consumed() -> bool:
            info = await engine.js.consumer_info(engine.settings.stream_name, consumer_name(sub))
            return info.ack_floor.stream_seq >= stored.seq and info.num_ack_pending == 0

        await wait_for(consumed, what="the worker to acknowledge the reply")
        assert len(srv.runs) == 1


def test_the_cli_serves_and_stops(tmp_path: Path, stand_in: tuple[str, ...], secret: str) -> None:
    env = cli_env(
        CLAUDE_WEBHOOK_SECRET=secret,
        CLAUDE_COMMAND=" ".join(stand_in),
        TURBOHOOKS_DATA_DIR=str(tmp_path / "data"),
    )
    binary = Path(sys.executable).parent / "turbohooks"
    proc = subprocess.Popen(
        [str(binary), "claude-server", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "claude-server listening on http://127.0.0.1:" in line, line + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = line.split("listening on ")[1].split()[0]

        async def check() -> None:
            assert (await post(url, comment("from the CLI"), secret))[0] == 202
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    async with http.get(url + "/runs") as r:
                        runs = (await r.json())["runs"]
                    if runs and runs[0]["status"] == "succeeded":
                        return
                    await asyncio.sleep(0.05)
            raise AssertionError(f"the run did not finish: {runs}")

        asyncio.run(check())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
