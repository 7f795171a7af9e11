"""What survives a crash: kill -9 of a worker in the middle of a burst, SIGTERM's graceful stop."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from consumers import Engine, Recorder, SubscriptionCreate
from consumers.log._views import ATTEMPTS, DELIVERIES
from streams import Settings, build_event
from tests.support import Received, Receiver, cli_env, wait_for

BIN = Path(sys.executable).parent / "turbohooks"


def _worker_env(settings: Settings) -> dict[str, str]:
    return cli_env(
        NATS_URL=settings.resolved_nats_url(),
        TURBOHOOKS_DATA_DIR=str(settings.data_dir),
        TURBOHOOKS_STREAM_MAX_BYTES=str(settings.stream_max_bytes),
        WEBHOOK_ALLOW_HTTP="true",
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        WEBHOOK_TIMEOUT=str(settings.webhook_timeout),
        WEBHOOK_RETRY_DELAY="0.2",
    )


async def _start_worker(settings: Settings) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(BIN),
        "worker",
        "--integration",
        "webhook",
        env=_worker_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_kill_9_of_a_worker_mid_burst_loses_nothing(
    engine: Engine, receiver: Receiver, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = f"/burst-{unique}"
    receiver.endpoint(path, delay=0.02)
    sub = await engine.service.create(
        SubscriptionCreate(name=f"burst-{unique}", url=receiver.url + path, event_types=["issue.*"])
    )
    first = await _start_worker(engine.settings)
    try:
        probe = await engine.publisher.emit(event_type="issue.created", entity_id=f"probe-{unique}")
        await wait_for(lambda: len(receiver.at(path)) >= 1, timeout=20, what="the worker process to deliver")
        events = [
            build_event(event_type="issue.updated", entity_id=unique, data={"current": {"n": n}}) for n in range(1000)
        ]
        acks = await engine.publisher.emit_many(events)
        await wait_for(lambda: len(receiver.at(path)) >= 250, timeout=30, what="the burst to be under way")
        first.kill()  # SIGKILL: no goodbye, in-flight deliveries unacknowledged
        await first.wait()
        delivered_before = len(receiver.at(path))
        assert delivered_before < 1001, "the kill came before the end of the burst"
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()

    second = await _start_worker(engine.settings)
    try:
        wanted = {str(a.event_id) for a in acks} | {str(probe.event_id)}
        await wait_for(
            lambda: wanted <= {r.event_id for r in receiver.at(path)}, timeout=60, what="every event after the crash"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0, "SIGTERM stops a worker cleanly"

    counts = Counter(r.event_id for r in receiver.at(path))
    duplicates = sum(c - 1 for c in counts.values())
    assert set(counts) == wanted
    with capsys.disabled():
        print(
            f"\n  kill -9 mid-burst: 1,001 events, {delivered_before} delivered before the kill, "
            f"all delivered after it, {duplicates} duplicates (at-least-once)"
        )
    assert sub.id  # the subscription is cleaned up by the engine fixture


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_deliveries(engine: Engine, receiver: Receiver, unique: str) -> None:
    """SIGTERM lets in-flight deliveries finish and acknowledges them: nothing is sent twice."""
    path = f"/graceful-{unique}"
    receiver.endpoint(path, delay=0.5)
    await engine.service.create(
        SubscriptionCreate(name=f"graceful-{unique}", url=receiver.url + path, event_types=["tag.*"])
    )
    worker = await _start_worker(engine.settings)
    try:
        probe = await engine.publisher.emit(event_type="tag.created", entity_id=f"probe-{unique}")
        await wait_for(lambda: len(receiver.at(path)) >= 1, timeout=20, what="the worker process to deliver")
        acks = await engine.publisher.emit_many(
            [build_event(event_type="tag.applied", entity_id=unique) for _ in range(10)]
        )
        await wait_for(lambda: len(receiver.at(path)) >= 11, timeout=10, what="ten deliveries in flight")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    # All ten were answered (after 0.5 s) and acknowledged before the exit:
    # a new worker gets nothing to redeliver.
    again = await _start_worker(engine.settings)
    try:
        late = await engine.publisher.emit(event_type="tag.created", entity_id=f"late-{unique}")
        await wait_for(lambda: late_seen(receiver, path, str(late.event_id)), timeout=20, what="the new worker")
    finally:
        again.send_signal(signal.SIGTERM)
        await asyncio.wait_for(again.wait(), 30)
    counts = Counter(r.event_id for r in receiver.at(path))
    assert counts[str(probe.event_id)] == 1
    assert all(counts[str(a.event_id)] == 1 for a in acks), counts


def late_seen(receiver: Receiver, path: str, event_id: str) -> bool:
    return any(r.event_id == event_id for r in receiver.at(path))


@pytest.mark.slow
async def test_every_request_before_a_kill_9_is_in_the_log_within_5_s_of_the_restart(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    """Attempts are written ahead: what a receiver got from a killed worker is in the log, at worst pending."""
    path = f"/ahead-{unique}"
    receiver.endpoint(path, delay=0.2)  # slow answers: many requests in flight at the kill
    sub = await engine.service.create(
        SubscriptionCreate(name=f"ahead-{unique}", url=receiver.url + path, event_types=["issue.*"])
    )
    stop = asyncio.Event()
    recorder = Recorder(engine.settings, engine.nc, engine.deliveries, engine.service)
    recording = asyncio.create_task(recorder.run(stop))
    first = await _start_worker(engine.settings)
    second: asyncio.subprocess.Process | None = None
    try:
        await engine.publisher.emit(event_type="issue.created", entity_id=f"probe-{unique}")
        await wait_for(lambda: len(receiver.at(path)) >= 1, timeout=20, what="the worker process to deliver")
        events = [
            build_event(event_type="issue.updated", entity_id=unique, data={"current": {"n": n}}) for n in range(600)
        ]
        acks = await engine.publisher.emit_many(events)
        await wait_for(lambda: len(receiver.at(path)) >= 150, timeout=30, what="the burst to be under way")
        first.kill()
        await first.wait()
        got = list(receiver.at(path))
        second = await _start_worker(engine.settings)
        restarted = time.monotonic()

        async def logged() -> bool:
            return _missing(got, await _attempt_rows(engine, sub.id)) == {}

        await wait_for(logged, timeout=5, what="every request made before the kill in the log")
        caught_up = time.monotonic() - restarted

        wanted = {str(a.event_id) for a in acks}
        await wait_for(lambda: wanted <= {r.event_id for r in receiver.at(path)}, timeout=60, what="every event")
        everything = list(receiver.at(path))

        async def all_final() -> bool:
            return _missing(everything, await _attempt_rows(engine, sub.id)) == {}

        await wait_for(all_final, timeout=30, what="every request in the log")
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        stop.set()
        await recording
    rows = await _attempt_rows(engine, sub.id)
    pending = sum(1 for outcomes in rows.values() for o in outcomes if o == "pending")
    webhook_ids = {r.headers["webhook-id"] for r in everything}
    assert webhook_ids <= {str(d) for d in rows}, "every webhook-id the receiver got has a delivery row"
    print(
        f"\n  write-ahead: {len(got)} requests before the kill, in the log {caught_up:.1f}s after the restart;"
        f" {pending} attempts left pending (outcome unknown)"
    )


async def _attempt_rows(engine: Engine, sub_id: uuid.UUID) -> dict[uuid.UUID, list[str]]:
    """Per delivery of ``sub_id``: the outcomes of its attempt rows."""
    async with engine.db.session() as session:
        result = await session.execute(
            select(ATTEMPTS.c.delivery_id, ATTEMPTS.c.outcome)
            .join(DELIVERIES, DELIVERIES.c.id == ATTEMPTS.c.delivery_id)
            .where(DELIVERIES.c.subscription_id == sub_id)
        )
        rows: dict[uuid.UUID, list[str]] = {}
        for delivery_id, outcome in result:
            rows.setdefault(delivery_id, []).append(outcome)
    return rows


def _missing(received: list[Received], rows: dict[uuid.UUID, list[str]]) -> dict[str, int]:
    """Webhook ids whose requests outnumber their attempt rows, with how many are missing."""
    requests = Counter(r.headers["webhook-id"] for r in received)
    missing = {wid: n - len(rows.get(uuid.UUID(wid), [])) for wid, n in requests.items()}
    return {wid: n for wid, n in missing.items() if n > 0}
