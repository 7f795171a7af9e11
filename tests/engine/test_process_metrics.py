"""Each separately started process serves its metrics on --metrics-port; the worker's count exactly what it did.

Real processes (``turbohooks worker|recorder|scheduler|claude-server``) on the
session's nats-server, a real receiver, metrics read over HTTP as Prometheus does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from consumers import Engine, SubscriptionCreate
from streams import VERSION, Settings
from tests.support import BIN, Receiver, Samples, assert_one_help_and_type_per_family, engine_cli_env, samples, value

_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Process:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}/metrics"


@contextlib.asynccontextmanager
async def _started(settings: Settings, *args: str, **env: str) -> AsyncIterator[_Process]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        str(BIN),
        *args,
        "--metrics-port",
        str(port),
        env=engine_cli_env(settings, WEBHOOK_RETRY_COUNT="1", WEBHOOK_RETRY_DELAY="0.2", **env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield _Process(process, port)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _scrape(client: httpx.AsyncClient, proc: _Process) -> str:
    """The process's /metrics, waiting for it to listen."""
    text: str | None = None

    async def answered() -> bool:
        nonlocal text
        if proc.process.returncode is not None:
            assert proc.process.stderr is not None
            raise AssertionError(f"exited {proc.process.returncode}: {(await proc.process.stderr.read()).decode()}")
        try:
            response = await client.get(proc.url)
        except httpx.TransportError:
            return False
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.text
        return True

    deadline = asyncio.get_running_loop().time() + 30
    while not await answered():
        assert asyncio.get_running_loop().time() < deadline, f"{proc.url} never answered"
        await asyncio.sleep(0.1)
    assert text is not None
    assert_one_help_and_type_per_family(text)
    return text


@pytest.mark.slow
async def test_each_process_serves_its_metrics_and_the_worker_counts_exactly(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    settings = engine.settings
    claude_port = _free_port()
    receiver.endpoint(f"/ok-{unique}")
    receiver.endpoint(f"/fail-{unique}", statuses=[500])
    ok = await engine.service.create(
        SubscriptionCreate(name=f"ok-{unique}", url=f"{receiver.url}/ok-{unique}", event_types=["tag.*"])
    )
    failing = await engine.service.create(
        SubscriptionCreate(name=f"fail-{unique}", url=f"{receiver.url}/fail-{unique}", event_types=["tag.*"])
    )
    async with (
        httpx.AsyncClient(timeout=5) as client,
        _started(settings, "worker", "--integration", "webhook") as worker,
        _started(settings, "recorder") as recorder,
        _started(settings, "scheduler") as scheduler,
        _started(settings, "claude-server", "--port", str(claude_port), CLAUDE_WEBHOOK_SECRET=_SECRET) as claude,
    ):
        before = samples(await _scrape(client, worker))
        for n in range(3):
            await engine.publisher.emit(event_type="tag.created", entity_id=f"{unique}-{n}")

        def per_sub(found: Samples, sub: uuid.UUID, outcome: str) -> float:
            return value(
                found,
                "turbohooks_subscription_deliveries_total",
                process="worker",
                subscription_id=str(sub),
                outcome=outcome,
            )

        found = before

        async def settled() -> bool:
            nonlocal found
            found = samples(await _scrape(client, worker))
            return per_sub(found, ok.id, "success") == 3 and per_sub(found, failing.id, "dead") == 3

        deadline = asyncio.get_running_loop().time() + 30
        while not await settled():
            assert asyncio.get_running_loop().time() < deadline, found
            await asyncio.sleep(0.2)

        # Exactly the deliveries made: 3 successes; the failing one 3 retries (attempt 1) then 3 dead (attempt 2).
        assert per_sub(found, ok.id, "success") == 3
        assert per_sub(found, ok.id, "retry") == per_sub(found, ok.id, "dead") == 0
        assert per_sub(found, failing.id, "retry") == 3 and per_sub(found, failing.id, "success") == 0
        assert len(receiver.at(f"/ok-{unique}")) == 3 and len(receiver.at(f"/fail-{unique}")) == 6

        def moved(name: str, **labels: str) -> float:
            labels = {"process": "worker", **labels}
            return value(found, name, **labels) - value(before, name, **labels)

        webhook = {"integration": "webhook"}
        assert moved("turbohooks_deliveries_total", outcome="success", **webhook) == 3
        assert moved("turbohooks_deliveries_total", outcome="retry", **webhook) == 3
        assert moved("turbohooks_deliveries_total", outcome="dead", **webhook) == 3
        # One observation per attempt: the histograms moved by the 9 requests, no more.
        assert moved("turbohooks_delivery_duration_seconds_count", **webhook) == 9
        assert moved("turbohooks_delivery_duration_seconds_bucket", le="+Inf", **webhook) == 9
        assert moved("turbohooks_delivery_request_bytes_count", **webhook) == 9
        assert moved("turbohooks_delivery_response_bytes_count", **webhook) == 9
        assert moved("turbohooks_delivery_responses_total", code="200", **webhook) == 3
        assert moved("turbohooks_delivery_responses_total", code="500", **webhook) == 6
        assert 0 < moved("turbohooks_delivery_duration_seconds_sum", **webhook) < 9 * settings.webhook_timeout
        assert value(found, "turbohooks_deliveries_in_flight", process="worker") == 0
        assert value(found, "turbohooks_worker_subscriptions", process="worker") >= 2

        # The other roles serve theirs, each sample labelled with its process.
        recorded = samples(await _scrape(client, recorder))
        assert value(recorded, "turbohooks_recorder_write_errors_total", process="recorder", kind="refused") == 0
        assert ("turbohooks_recorder_batch_attempts_count", frozenset({("process", "recorder")})) in recorded
        scheduled = samples(await _scrape(client, scheduler))
        assert value(scheduled, "turbohooks_build_info", process="scheduler", version=VERSION) == 1
        # claude-server counts the requests it answered: a bad signature is a 401.
        text = await _scrape(client, claude)
        refused = await client.post(f"http://127.0.0.1:{claude_port}/webhook", content=b"{}")
        assert refused.status_code == 401
        after = samples(await _scrape(client, claude))
        labels = {"process": "claude-server", "method": "POST", "route": "/webhook", "status": "401"}
        assert (
            value(after, "turbohooks_claude_requests_total", **labels)
            - value(samples(text), "turbohooks_claude_requests_total", **labels)
            == 1
        )

        # Only /metrics is served.
        assert (await client.get(worker.url.replace("/metrics", "/other"))).status_code == 404
