"""The `turbohooks` command, end to end, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streams import EmbeddedNats
from tests.support import cli_env

BIN = Path(sys.executable).parent / "turbohooks"


def _env(**extra: str) -> dict[str, str]:
    return cli_env(**extra)


def cli(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def env(nats_server: EmbeddedNats, tmp_path: Path) -> dict[str, str]:
    return _env(
        NATS_URL=nats_server.url,
        TURBOHOOKS_DATA_DIR=str(tmp_path / "data"),
        TURBOHOOKS_STREAM_MAX_BYTES="1GiB",
        COLUMNS="200",
    )


def test_events_lists_the_catalog() -> None:
    result = cli("events", "--json", "--source", "turbo", env=_env())
    assert result.returncode == 0, result.stderr
    catalog = json.loads(result.stdout)
    assert len(catalog) == 59
    assert {"event_type": "issue.created", "entity_type": "issue", "action": "created"}.items() <= catalog[6].items()
    table = cli("events", env=_env(COLUMNS="200"))
    assert "turbo.calendar.event_starting_soon" in table.stdout
    # Every known type, each with its source: Turbo's, then those the inbound GitHub webhook publishes.
    assert (
        "turbo.external.github.issues" in table.stdout
        and "73 event types (59 turbo, 10 github, 4 turbohooks)" in table.stdout
    )
    everything = json.loads(cli("events", "--json", env=_env()).stdout)
    assert [(t["event_type"], t["source"]) for t in everything[56:61]] == [
        ("system.health_check_failed", "turbo"),
        ("system.health_check_recovered", "turbo"),
        ("system.ai_analysis_complete", "turbo"),
        ("external.github.issues", "github"),
        ("external.github.issue_comment", "github"),
    ]
    refused = cli("events", "--source", "gitlab", env=_env())
    assert refused.returncode == 2 and "--source" in refused.stderr


def test_publish_then_tail_shows_the_event(env: dict[str, str], js: object) -> None:
    entity = f"cli-{uuid.uuid4().hex[:8]}"
    published = cli(
        "publish",
        "issue.created",
        "--entity-id",
        entity,
        "--data",
        '{"title": "Bug in login"}',
        "--context",
        "project_id=p-1",
        "--actor-type",
        "user",
        "--actor-name",
        "ada",
        "--json",
        env=env,
    )
    assert published.returncode == 0, published.stderr
    ack = json.loads(published.stdout)
    tailed = cli("tail", "turbo.issue.>", "--from-seq", str(ack["seq"]), "--no-follow", "--json", env=env)
    assert tailed.returncode == 0, tailed.stderr
    first = json.loads(tailed.stdout.splitlines()[0])
    assert first["event_id"] == ack["event_id"]
    assert first["data"]["current"] == {"title": "Bug in login"}
    assert first["context"] == {"project_id": "p-1"}
    assert first["actor"] == {"type": "user", "name": "ada", "metadata": {}}

    human = cli("tail", "issue.*", "--from-seq", str(ack["seq"]), "--count", "1", env=env)
    assert "issue.created" in human.stdout and entity in human.stdout and "Bug in login" in human.stdout


def test_publish_twice_with_one_event_id_is_stored_once(env: dict[str, str], js: object) -> None:
    event_id = str(uuid.uuid4())
    args = ("publish", "tag.created", "--entity-id", "t-1", "--event-id", event_id, "--json")
    first = json.loads(cli(*args, env=env).stdout)
    second = json.loads(cli(*args, env=env).stdout)
    assert first["seq"] == second["seq"] and second["duplicate"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("publish", "issue.exploded", "--entity-id", "1"), "event_type: unknown event type"),
        (("publish", "issue.created", "--entity-id", "1", "--data", "[1]"), "--data: must be a JSON object"),
        (("publish", "issue.created", "--entity-id", "1", "--data", "{oops"), "--data: not valid JSON"),
        (("publish", "issue.created", "--entity-id", "1", "--context", "nope"), "--context"),
        (("publish", "issue.created", "--entity-id", "1", "--context", "planet=mars"), "context"),
        (("publish", "issue.created", "--entity-id", "1", "--actor-type", "robot"), "actor.type"),
        (("publish", "issue.created", "--entity-id", "1", "--causation", "nope;depth=1"), "causation: 'nope'"),
        (("tail", "--since", "yesterday-ish"), "--since"),
    ],
)
def test_bad_input_is_refused_and_publishes_nothing(
    env: dict[str, str], js: object, args: tuple[str, ...], message: str
) -> None:
    before = json.loads(cli("streams", "--json", env=env).stdout)["streams"][0]["last_seq"]
    result = cli(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    after = json.loads(cli("streams", "--json", env=env).stdout)["streams"][0]["last_seq"]
    assert after == before


def test_bad_setting_names_the_variable(env: dict[str, str]) -> None:
    result = cli("streams", env={**env, "WEBHOOK_TIMEOUT": "soon"})
    assert result.returncode == 2
    assert "WEBHOOK_TIMEOUT" in result.stderr


def test_unreachable_nats_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = cli("streams", env=_env(TURBOHOOKS_NATS_PORT=str(port), TURBOHOOKS_DATA_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert "cannot reach NATS" in result.stderr and "turbohooks up" in result.stderr


def test_streams_shows_state(env: dict[str, str], js: object) -> None:
    state = json.loads(cli("streams", "--json", env=env).stdout)
    names = [s["name"] for s in state["streams"]]
    assert names[0] == "TURBO_EVENTS" and "TURBOHOOKS_DLQ" in names
    assert state["streams"][0]["subjects"] == ["turbo.>"]


@pytest.fixture
def up_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(
        TURBOHOOKS_NATS_PORT=str(port), TURBOHOOKS_DATA_DIR=str(tmp_path / "up"), TURBOHOOKS_STREAM_MAX_BYTES="1GiB"
    )
    process = subprocess.Popen([str(BIN), "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process, env
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float = 30) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed; got:\n{''.join(lines)}")


@pytest.mark.slow
def test_up_runs_embedded_nats_and_stops_cleanly(up_process: tuple[subprocess.Popen[str], dict[str, str]]) -> None:
    process, env = up_process
    lines = _wait_for_line(process, "turbohooks is up")
    assert (Path(env["TURBOHOOKS_DATA_DIR"]) / "jetstream").is_dir()
    gateway = next(line for line in lines if line.startswith("gateway on "))
    url = gateway.split()[2]
    token = (Path(env["TURBOHOOKS_DATA_DIR"]) / "admin-token").read_text().strip()
    # Issue 17: the generated token is written to its file only, the path printed.
    assert token not in "".join(lines), "a generated admin token is never printed"
    assert any(str(Path(env["TURBOHOOKS_DATA_DIR"]) / "admin-token") in line for line in lines)
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{url}/api/subscriptions", timeout=10).status_code == 401
    listed = httpx.get(f"{url}/api/subscriptions", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert listed.status_code == 200
    published = cli("publish", "issue.created", "--entity-id", "42", "--data", '{"title": "Bug in login"}', env=env)
    assert published.returncode == 0, published.stderr
    tailed = cli("tail", "turbo.issue.>", "--from-seq", "1", "--no-follow", env={**env, "COLUMNS": "200"})
    assert "issue.created" in tailed.stdout and "Bug in login" in tailed.stdout

    # A second `up` on the same port says the port is taken and how to choose another.
    second = cli("up", env=env, timeout=30)
    assert second.returncode == 1
    assert "is taken" in second.stderr and "TURBOHOOKS_NATS_PORT" in second.stderr

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    # nats-server is gone with it: the port is free again.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", int(env["TURBOHOOKS_NATS_PORT"])))
