"""Per-subscription health: what waits and since when (JetStream), how deliveries went (the delivery log)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from consumers import Engine, SubscriptionPatch, consumer_name
from tests.support import Receiver, Running, wait_for

from .conftest import new_subscription


async def test_pending_and_oldest_age_match_the_consumer_then_the_log_has_the_rates(
    client: httpx.AsyncClient, engine: Engine, running: Running, receiver: Receiver, unique: str
) -> None:
    created = (
        await client.post("/api/subscriptions", json=new_subscription(receiver.url + "/h", f"h-{unique}"))
    ).json()
    sid = uuid.UUID(created["id"])
    await wait_for(lambda: sid in running.worker.running, what="the worker to start the subscription")
    # Beside it, a subscription whose receiver answers 503: each event waits 30 s for its retry, in flight.
    failing = await running.subscribe(
        name=f"503-{unique}", url=receiver.endpoint("/503", [503]), event_types=["issue.*"], retry_schedule=[30.0]
    )
    await engine.service.update(sid, SubscriptionPatch(active=False))
    await wait_for(lambda: sid not in running.worker.running, what="the worker to stop the paused subscription")
    seqs = []
    for n in range(5):
        response = await client.post("/api/events", json={"event_type": "issue.created", "entity_id": f"{unique}-{n}"})
        seqs.append(response.json()["seq"])
    sub = await engine.subscriptions.get(sid)
    stream = engine.settings.stream_name

    async def five_waiting() -> bool:
        return (await engine.js.consumer_info(stream, consumer_name(sub))).num_pending == 5

    await wait_for(five_waiting, what="five events waiting")
    health = (await client.get(f"/api/subscriptions/{sid}/health")).json()
    info = await engine.js.consumer_info(stream, consumer_name(sub))
    first = await engine.js.get_msg(stream, seqs[0])
    assert first.time is not None and info.ack_floor is not None and info.ack_floor.stream_seq < seqs[0]
    age = (datetime.now(UTC) - first.time).total_seconds()
    assert health["pending"] == info.num_pending == 5 and health["in_flight"] == info.num_ack_pending == 0
    assert health["consumer"] and health["status"] == "paused"
    assert age - 1.0 <= health["oldest_pending_seconds"] <= age
    assert health["last_5m"]["attempts"] == 0 and health["last_5m"]["success_rate"] is None

    metrics = (await client.get("/metrics")).text
    labels = f'{{name="h-{unique}",process="gateway",subscription_id="{sid}"}}'
    assert f"turbohooks_subscription_pending_events{labels} 5.0" in metrics
    oldest = float(metrics.split(f"turbohooks_subscription_oldest_pending_seconds{labels} ")[1].split()[0])
    assert age - 1.0 <= oldest <= age + 2.0

    async def five_retries() -> bool:
        figures = (await client.get(f"/api/subscriptions/{failing.id}/health")).json()
        return bool(figures["retries_scheduled"] == 5 and figures["last_5m"]["attempts"] == 5)

    await wait_for(five_retries, what="five retries scheduled in the log")
    retrying = (await client.get(f"/api/subscriptions/{failing.id}/health")).json()
    failing_info = await engine.js.consumer_info(stream, consumer_name(failing))
    assert retrying["in_flight"] == failing_info.num_ack_pending == 5 and retrying["pending"] == 0
    assert retrying["last_5m"]["success_rate"] == 0.0 and retrying["oldest_pending_seconds"] >= age - 1.0
    assert retrying["dead_letters"] == 0

    await engine.service.update(sid, SubscriptionPatch(active=True))
    await wait_for(lambda: len(receiver.at("/h")) == 5, what="the backlog delivered")

    async def recorded() -> bool:
        figures = (await client.get(f"/api/subscriptions/{sid}/health")).json()
        return bool(figures["last_5m"]["attempts"] == 5 and figures["pending"] == 0 and figures["in_flight"] == 0)

    await wait_for(recorded, what="the attempts in the log, nothing waiting")
    stats = (await client.get("/api/stats", params={"window": "1h"})).json()
    [mine] = [h for h in stats["health"] if h["subscription_id"] == str(sid)]
    assert mine["oldest_pending_seconds"] == 0.0 and mine["dead_letters"] == 0 and mine["retries_scheduled"] == 0
    for window in ("last_5m", "last_1h"):
        assert mine[window]["success_rate"] == 1.0 and mine[window]["attempts"] == 5
        assert 0 < mine[window]["latency_p50_ms"] <= mine[window]["latency_p95_ms"] <= mine[window]["latency_p99_ms"]
    assert (await client.get(f"/api/subscriptions/{uuid.uuid4()}/health")).status_code == 404
