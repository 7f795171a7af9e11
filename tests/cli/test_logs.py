"""Structured logs of real processes: a full run (create with credentials, deliver, fail, retry, dead letter,
rotate, pause, resume) at DEBUG in JSON: the failures carry the delivery's ids, and no secret or signature is
in any log line.

The worker, the recorder and the gateway are ``turbohooks`` processes on the session's nats-server, traced
(TURBOHOOKS_TRACING=true): ``POST /api/events`` with a ``traceparent`` reaches the receiver in the same trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from consumers import Engine, delivery_id_for
from tests.support import BIN, Receiver, engine_cli_env, run_cli_async, wait_for

_SIGNATURE = re.compile(r"v1a?,[A-Za-z0-9+/=]{16,}")
_CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"


class _Process:
    def __init__(self, proc: asyncio.subprocess.Process, out: Path, err: Path) -> None:
        self.proc, self.out, self.err = proc, out, err

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")


@contextlib.asynccontextmanager
async def _started(folder: Path, env: dict[str, str], *names: str) -> AsyncIterator[dict[str, _Process]]:
    started: dict[str, _Process] = {}
    try:
        for name in names:
            out, err = folder / f"{name}.out", folder / f"{name}.err"
            args = ("gateway", "--port", "0") if name == "gateway" else (name,)
            with out.open("wb") as o, err.open("wb") as e:
                proc = await asyncio.create_subprocess_exec(str(BIN), *args, env=env, stdout=o, stderr=e)
            started[name] = _Process(proc, out, err)
        yield started
    finally:
        for process in started.values():
            if process.proc.returncode is None:
                process.proc.send_signal(signal.SIGINT)
        for process in started.values():
            try:
                await asyncio.wait_for(process.proc.wait(), 20)
            except TimeoutError:
                process.proc.kill()
                await process.proc.wait()


def _json_lines(text: str, who: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        record = json.loads(line)  # every line a process logs is one JSON object
        assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= record.keys(), (who, line)
        lines.append(record)
    return lines


async def test_a_full_run_logs_json_with_the_ids_and_never_a_secret(
    engine: Engine, receiver: Receiver, unique: str, tmp_path: Path
) -> None:
    token = f"admin-{uuid.uuid4().hex}"
    api_key, bearer = f"key-{uuid.uuid4().hex}", f"bearer-{uuid.uuid4().hex}"
    env = engine_cli_env(
        engine.settings,
        TURBOHOOKS_LOG_LEVEL="DEBUG",
        TURBOHOOKS_LOG_FORMAT="json",
        TURBOHOOKS_TRACING="true",
        TURBOHOOKS_ADMIN_TOKEN=token,
        WEBHOOK_RETRY_COUNT="2",
        WEBHOOK_RETRY_DELAY="0.2",
        WEBHOOK_TIMEOUT="5",
        PYTHONUNBUFFERED="1",
    )
    path = f"/logged-{unique}"
    url = receiver.endpoint(path, statuses=[500, 500, 500, 200])
    cli_errors: list[str] = []

    async def cli(*args: str) -> str:
        done = await run_cli_async(*args, env=env)
        assert done.returncode == 0, done.stderr
        cli_errors.append(done.stderr)
        return done.stdout

    async with _started(tmp_path, env, "worker", "recorder", "gateway") as procs:
        await wait_for(lambda: "worker running" in procs["worker"].stdout(), timeout=30, what="the worker")
        await wait_for(lambda: "admin API" in procs["gateway"].stdout(), timeout=30, what="the gateway")
        gateway = re.search(r"admin API on (http://\S+)", procs["gateway"].stdout())
        assert gateway is not None
        created = json.loads(
            await cli(
                "subscriptions",
                "create",
                f"--name=logged-{unique}",
                f"--url={url}",
                "--event-types=tag.created",
                f"--header=X-Api-Key: {api_key}",
                f"--header=Authorization: Bearer {bearer}",
            )
        )
        sub_id = uuid.UUID(created["id"])
        secrets = [created["secret"]]

        # Event 1 through the gateway, in the caller's trace: 500, 500, 500 → the dead letters.
        async with httpx.AsyncClient(base_url=gateway.group(1)) as http:
            answer = await http.post(
                "/api/events",
                json={"event_type": "tag.created", "entity_id": unique},
                headers={
                    "Authorization": f"Bearer {token}",
                    "traceparent": f"00-{_CALLER_TRACE}-b7ad6b7169203331-01",
                },
            )
        assert answer.status_code == 201, answer.text
        first = uuid.UUID(answer.json()["event_id"])
        dead_id = delivery_id_for(sub_id, first)
        await wait_for(lambda: len(receiver.at(path)) == 3, timeout=20, what="three attempts")
        await wait_for(
            lambda: any(
                "dead letter" in line and str(dead_id) in line for line in procs["worker"].stderr().splitlines()
            ),
            timeout=10,
            what="the dead letter's log line",
        )

        # Rotate (both secrets sign during the grace), deliver event 2 (200), pause and resume.
        secrets.append(json.loads(await cli("subscriptions", "rotate-secret", str(sub_id)))["secret"])
        second = json.loads(await cli("publish", "tag.created", f"--entity-id={unique}", "--json"))["event_id"]
        await wait_for(lambda: len(receiver.at(path)) == 4, timeout=15, what="the fourth request")
        await cli("subscriptions", "pause", str(sub_id))
        await cli("subscriptions", "resume", str(sub_id))

        async def recorded() -> bool:
            try:
                return (await engine.deliveries.get(delivery_id_for(sub_id, uuid.UUID(second)))).status == "success"
            except KeyError:
                return False

        await wait_for(recorded, timeout=15, what="the recorder to store the success")
    requests = receiver.at(path)

    # The receiver is in the caller's trace (gateway → JetStream headers → worker → request).
    assert all(r.headers["traceparent"].split("-")[1] == _CALLER_TRACE for r in requests[:3])
    assert requests[3].headers["traceparent"].split("-")[1] != _CALLER_TRACE

    worker = _json_lines(procs["worker"].stderr(), "worker")
    failures = [r for r in worker if r.get("delivery_id") == str(dead_id) and r["level"] == "WARNING"]
    assert [(r["message"], r["attempt"], r["status"], r["outcome"]) for r in failures] == [
        ("delivery attempt failed; retry scheduled", 1, 500, "retrying"),
        ("delivery attempt failed; retry scheduled", 2, 500, "retrying"),
        ("delivery failed for good", 3, 500, "failed"),
    ]
    for record in failures:
        assert record["event_id"] == str(first) and record["subscription_id"] == str(sub_id)
        assert record["latency_ms"] > 0 and record["error"] == "HTTP 500" and record["event_type"] == "tag.created"
    assert "next_attempt_at" in failures[0] and "next_attempt_at" not in failures[2]
    (letter,) = [r for r in worker if r["message"].startswith("dead letter") and r["delivery_id"] == str(dead_id)]
    assert letter["attempt"] == 3 and letter["reason"]
    assert any(r["message"] == "delivered" and r["attempt"] == 1 and r["event_id"] == second for r in worker)
    changes = [
        (r["previous_status"], r["status"])
        for text in cli_errors
        for r in _json_lines(text, "cli")
        if r.get("subscription_id") == str(sub_id) and "previous_status" in r
    ]
    assert changes == [("active", "paused"), ("paused", "active")]

    # No secret, credential, token or signature in any log line of any process.
    logs = "\n".join([*(p.stderr() + p.stdout() for p in procs.values()), *cli_errors])
    signatures = [s for r in requests for s in r.headers["webhook-signature"].split()]
    assert len(signatures) == 3 + 2 and len(secrets) == 2  # one v1 per attempt; two after the rotation
    for secret in [*secrets, *(s.removeprefix("whsec_") for s in secrets), api_key, bearer, token, *signatures]:
        assert secret not in logs
    assert _SIGNATURE.findall(logs) == []
