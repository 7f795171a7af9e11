"""The delivery log, retries, recovery and replays, end to end with a real worker and recorder."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec

from consumers import Engine, consumer_name, verify
from gateway import ReplayRange, replay_subscription
from tests.support import Receiver, Running, wait_for

from .conftest import new_subscription


async def _subscribe(client: httpx.AsyncClient, running: Running, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/subscriptions", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    sid = uuid.UUID(created["id"])
    await wait_for(lambda: sid in running.worker.running, timeout=5, what="the worker to start the subscription")
    return created


async def _publish(client: httpx.AsyncClient, event_type: str, entity_id: str) -> dict[str, Any]:
    response = await client.post("/api/events", json={"event_type": event_type, "entity_id": entity_id})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _detail(client: httpx.AsyncClient, delivery_id: str) -> dict[str, Any]:
    return (await client.get(f"/api/deliveries/{delivery_id}")).json()  # type: ignore[no-any-return]


async def test_publish_deliver_log_retry_replay_stats(
    client: httpx.AsyncClient, engine: Engine, running: Running, receiver: Receiver, unique: str
) -> None:
    sub = await _subscribe(client, running, new_subscription(receiver.url + "/e2e", f"e2e-{unique}"))
    sid = sub["id"]
    first = await _publish(client, "issue.created", unique)

    async def logged() -> bool:
        page = (await client.get("/api/deliveries", params={"subscription_id": sid})).json()
        return page["total"] == 1 and page["items"][0]["status"] == "success"

    await wait_for(logged, what="the delivery in the log")
    item = (await client.get("/api/deliveries", params={"subscription_id": sid})).json()["items"][0]
    assert item["event_id"] == first["event_id"] and item["attempts"] == 1 and item["stream_seq"] == first["seq"]
    detail = await _detail(client, item["id"])
    assert detail["response_code"] == 200 and detail["response_body"].startswith("answer 200")
    assert detail["request_url"] == receiver.url + "/e2e"
    assert msgspec.json.decode(detail["request_body"])["event_id"] == first["event_id"]
    verify(sub["secret"], detail["request_headers"], detail["request_body"].encode())
    assert [a["trigger"] for a in detail["attempt_log"]] == ["live"]

    retried = await client.post(f"/api/deliveries/{item['id']}/retry")
    assert retried.status_code == 202 and retried.json() == {
        "delivery_id": item["id"],
        "subscription_id": sid,
        "queued": True,
    }

    async def second_attempt() -> bool:
        return (await _detail(client, item["id"]))["attempts"] == 2

    await wait_for(second_attempt, what="the retry in the log")
    assert [a["trigger"] for a in (await _detail(client, item["id"]))["attempt_log"]] == ["live", "manual"]
    assert len(receiver.at("/e2e")) == 2

    second = await _publish(client, "issue.updated", unique)
    ignored = await _publish(client, "comment.created", unique)  # not subscribed: never replayed
    await wait_for(lambda: len(receiver.at("/e2e")) == 3, what="the second live delivery")
    live = await engine.js.consumer_info(engine.settings.stream_name, f"webhook_{uuid.UUID(sid).hex}")

    window = {"from_seq": first["seq"], "to_seq": ignored["seq"]}
    dry = (await client.post(f"/api/subscriptions/{sid}/replay", json={**window, "dry_run": True})).json()
    assert dry["dry_run"] and dry["queued"] == 0 and dry["matched"] == 2 and not dry["truncated"]
    assert [e["event_id"] for e in dry["events"]] == [first["event_id"], second["event_id"]]
    assert len(receiver.at("/e2e")) == 3

    replayed = await client.post(f"/api/subscriptions/{sid}/replay", json={**window, "event_types": ["issue.*"]})
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["queued"] == 2 and replayed.json()["max_events"] == 10_000
    await wait_for(lambda: len(receiver.at("/e2e")) == 5, what="the replayed deliveries")
    again = [msgspec.json.decode(r.body)["event_id"] for r in receiver.at("/e2e")[3:]]
    assert sorted(again) == sorted([first["event_id"], second["event_id"]])

    async def replay_logged() -> bool:
        log = (await _detail(client, item["id"]))["attempt_log"]
        return [a["trigger"] for a in log] == ["live", "manual", "replay"]

    await wait_for(replay_logged, what="the replay in the log")

    # The live consumer did not move: same position, nothing pending, nothing redelivered.
    after = await engine.js.consumer_info(engine.settings.stream_name, f"webhook_{uuid.UUID(sid).hex}")
    assert after.delivered.stream_seq == live.delivered.stream_seq and after.num_pending == 0

    stats = (await client.get("/api/stats", params={"window": "1h"})).json()
    assert stats["window_seconds"] == 3600 and stats["deliveries"]["deliveries"] == 2
    assert stats["deliveries"]["success_rate"] == 1.0 and stats["deliveries"]["latency_p50_ms"] is not None
    assert stats["deliveries"]["most_active_subscriptions"][0]["subscription_id"] == sid
    assert stats["lag"] == [
        {"subscription_id": sid, "name": f"e2e-{unique}", "status": "active", "pending": 0, "ack_pending": 0}
    ]
    metrics = (await client.get("/metrics")).text
    assert 'turbohooks_deliveries_last_24h{process="gateway",status="success"} 2.0' in metrics
    assert (
        f'turbohooks_subscription_pending_events{{name="e2e-{unique}",process="gateway",subscription_id="{sid}"}} 0.0'
        in metrics
    )


async def test_lag_counts_what_a_paused_subscription_has_not_received(
    client: httpx.AsyncClient, engine: Engine, receiver: Receiver, unique: str
) -> None:
    response = await client.post(
        "/api/subscriptions", json=new_subscription(receiver.url + "/lag", f"lag-{unique}", active=False)
    )
    sid = response.json()["id"]
    for _ in range(3):
        await _publish(client, "issue.created", unique)
    lag = (await client.get("/api/stats")).json()["lag"]
    assert lag == [
        {"subscription_id": sid, "name": f"lag-{unique}", "status": "paused", "pending": 3, "ack_pending": 0}
    ]
    sub = await engine.subscriptions.get(uuid.UUID(sid))
    await engine.js.delete_consumer(engine.settings.stream_name, consumer_name(sub))
    assert (await client.get("/api/stats")).json()["lag"][0]["pending"] is None
    assert (await client.get("/api/stats", params={"window": "soon"})).json()["field"] == "window"
    assert (await client.get("/api/stats", params={"window": "0s"})).status_code == 422


async def test_recover_queues_every_failed_delivery(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    receiver.statuses["/bad"] = 400  # a client error fails at once, no retries
    sub = await _subscribe(client, running, new_subscription(receiver.url + "/bad", f"bad-{unique}"))
    sid = sub["id"]
    for event_type in ("issue.created", "issue.closed"):
        await _publish(client, event_type, unique)

    async def failed() -> bool:
        page = await client.get("/api/deliveries", params={"subscription_id": sid, "status": "failed"})
        return page.json()["total"] == 2

    await wait_for(failed, what="two failed deliveries")
    by_type = await client.get("/api/deliveries", params={"event_type": "issue.closed", "since": "1h"})
    assert [d["event_type"] for d in by_type.json()["items"]] == ["issue.closed"]

    receiver.statuses["/bad"] = 200
    recovered = await client.post(f"/api/subscriptions/{sid}/recover", params={"since": "1h"})
    assert recovered.status_code == 202, recovered.text
    assert recovered.json()["queued"] == 2 and not recovered.json()["truncated"]

    async def succeeded() -> bool:
        page = await client.get("/api/deliveries", params={"subscription_id": sid, "status": "success"})
        return page.json()["total"] == 2

    await wait_for(succeeded, what="the recovered deliveries to succeed")
    assert len(receiver.at("/bad")) == 4
    none_left = await client.post(f"/api/subscriptions/{sid}/recover", params={"since": "1h"})
    assert none_left.json()["queued"] == 0


async def test_paused_subscriptions_refuse_retry_recover_and_replay(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    sub = await _subscribe(client, running, new_subscription(receiver.url + "/pz", f"pz-{unique}"))
    sid = sub["id"]
    ack = await _publish(client, "issue.created", unique)

    async def logged() -> bool:
        return (await client.get("/api/deliveries", params={"subscription_id": sid})).json()["total"] == 1

    await wait_for(logged, what="the delivery in the log")
    delivery_id = (await client.get("/api/deliveries", params={"subscription_id": sid})).json()["items"][0]["id"]
    await client.patch(f"/api/subscriptions/{sid}", json={"active": False})
    for response in (
        await client.post(f"/api/deliveries/{delivery_id}/retry"),
        await client.post(f"/api/subscriptions/{sid}/recover", params={"since": "1h"}),
        await client.post(f"/api/subscriptions/{sid}/replay", json={"from_seq": ack["seq"]}),
    ):
        assert response.status_code == 409, response.text
        assert "paused" in response.json()["detail"]
    dry = await client.post(f"/api/subscriptions/{sid}/replay", json={"from_seq": ack["seq"], "dry_run": True})
    assert dry.status_code == 200 and dry.json()["matched"] == 1


async def test_refusals_and_unknown_ids(client: httpx.AsyncClient, receiver: Receiver, unique: str) -> None:
    created = await client.post("/api/subscriptions", json=new_subscription(receiver.url + "/v", f"v-{unique}"))
    sid = created.json()["id"]
    replay = f"/api/subscriptions/{sid}/replay"
    for body, status, field in [
        ({}, 422, "since"),
        ({"since": "1h", "from_seq": 1}, 422, "from_seq"),
        ({"since": "1h", "until": "2h"}, 422, "until"),
        ({"from_seq": 5, "to_seq": 2}, 422, "to_seq"),
        ({"from_seq": 1, "until": "1h", "to_seq": 3}, 422, "to_seq"),
        ({"since": "1h", "event_types": ["comment.*"]}, 422, "event_types"),
        ({"since": "1h", "event_types": ["nope"]}, 422, "event_types[0]"),
        ({"since": "next tuesday"}, 422, "since"),
        ({"from_seq": 0}, 400, "from_seq"),
        ({"since": "1h", "dry": True}, 400, "dry"),
    ]:
        response = await client.post(replay, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())

    missing = uuid.uuid4()
    for method, path, kwargs in [
        ("GET", f"/api/deliveries/{missing}", {}),
        ("POST", f"/api/deliveries/{missing}/retry", {}),
        ("POST", f"/api/subscriptions/{missing}/recover", {"params": {"since": "1h"}}),
        ("POST", f"/api/subscriptions/{missing}/replay", {"json": {"since": "1h"}}),
        ("POST", f"/api/subscriptions/{missing}/test", {}),
        ("POST", f"/api/subscriptions/{missing}/rotate-secret", {}),
    ]:
        response = await client.request(method, path, **kwargs)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")

    no_since = await client.post(f"/api/subscriptions/{sid}/recover")
    assert no_since.status_code == 400 and no_since.json()["field"] == "since"
    for params, status, field in [
        ({"status": "lost"}, 400, "status"),
        ({"subscription_id": "abc"}, 400, "subscription_id"),
        ({"since": "soon"}, 422, "since"),
        ({"offset": -1}, 400, "offset"),
        ({"limit": 501}, 400, "limit"),
    ]:
        response = await client.get("/api/deliveries", params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["field"] == field


async def test_a_replay_is_bounded_and_says_where_to_continue(
    engine: Engine, client: httpx.AsyncClient, receiver: Receiver, unique: str
) -> None:
    created = await client.post("/api/subscriptions", json=new_subscription(receiver.url + "/b", f"b-{unique}"))
    sub = await engine.subscriptions.get(uuid.UUID(created.json()["id"]))
    acks = [await _publish(client, "issue.created", unique) for _ in range(5)]
    seen: list[tuple[int, int]] = []
    spec = ReplayRange(from_seq=acks[0]["seq"], to_seq=acks[-1]["seq"], dry_run=True)
    result = await replay_subscription(engine, sub, spec, max_events=2, progress=lambda d, t: seen.append((d, t)))
    assert result.truncated and result.next_seq == acks[2]["seq"] and result.matched == 5
    assert [e.seq for e in result.events] == [acks[0]["seq"], acks[1]["seq"]]
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    rest = await replay_subscription(engine, sub, ReplayRange(from_seq=result.next_seq, dry_run=True))
    assert [e.seq for e in rest.events] == [a["seq"] for a in acks[2:]]
