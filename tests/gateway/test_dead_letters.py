"""The dead letters in the API: listed with the reason, shown, redriven (or refused with why), end to end."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from consumers import DeadLetter
from streams import ATTEMPTS_SUBJECT_ROOT, DEAD_LETTER_SUBJECT_ROOT, build_event, encode_event
from tests.support import Receiver, Running, wait_for

from .conftest import new_subscription


def envelope(event_type: str, entity_id: str) -> bytes:
    """An event envelope as a NATS client could publish it, bypassing the publisher."""
    return (
        b'{"event_id":"' + str(uuid.uuid4()).encode() + b'","event_type":"' + event_type.encode() + b'",'
        b'"timestamp":"2024-05-01T12:00:00Z","entity_type":"issue","entity_id":"' + entity_id.encode() + b'",'
        b'"action":"created"}'
    )


async def _subscribe(client: httpx.AsyncClient, running: Running, body: dict[str, Any]) -> str:
    response = await client.post("/api/subscriptions", json=body)
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    await wait_for(lambda: uuid.UUID(sid) in running.worker.running, timeout=5, what="the worker to start it")
    return sid


async def _letters(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/dead-letters", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _wait_letters(client: httpx.AsyncClient, count: int, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = await _letters(client, **params)
        return len(found) >= count

    await wait_for(enough, what=f"{count} dead letters ({params})")
    return found


async def test_a_mismatched_event_is_listed_with_the_reason_and_its_redrive_is_refused(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    sid = await _subscribe(client, running, new_subscription(receiver.url + f"/mm-{unique}", f"mm-{unique}"))
    js = running.worker.js
    mismatched = envelope("issue.closed", unique)
    ack = await js.publish("turbo.issue.created", mismatched)

    (letter,) = await _wait_letters(client, 1, subscription_id=sid)
    assert letter["cause"] == "refused" and letter["redrivable"] and letter["note"] is None
    assert "published on turbo.issue.created" in letter["reason"]
    assert letter["subject"] == "turbo.issue.created" and letter["source_seq"] == ack.seq
    assert letter["subscription_id"] == sid and letter["delivery_id"] is None and letter["last_attempt"] is None
    assert base64.b64decode(letter["raw"]) == mismatched and not letter["raw_truncated"]
    assert letter["event"]["event_type"] == "issue.closed"  # it decodes, without its subject
    shown = await client.get(f"/api/dead-letters/{letter['seq']}")
    assert shown.status_code == 200 and shown.json() == letter
    assert await _letters(client, subscription_id=sid, cause="delivery_failed") == []
    assert [x["seq"] for x in await _letters(client, subscription_id=sid, cause="refused")] == [letter["seq"]]
    assert await _letters(client, subscription_id=sid, since="2099-01-01T00:00:00Z") == []

    # Nothing changed in the rules: the redrive says why it is still refused, and the letter stays.
    refused = await client.post(f"/api/dead-letters/{letter['seq']}/redrive")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "still refused" in refused.json()["detail"] and "turbo.issue.created" in refused.json()["detail"]
    assert [x["seq"] for x in await _letters(client, subscription_id=sid)] == [letter["seq"]]
    assert receiver.at(f"/mm-{unique}") == []

    missing = await client.get("/api/dead-letters/999999999")
    assert missing.status_code == 404 and "dead letter 999999999" in missing.json()["detail"]
    assert (await client.post("/api/dead-letters/999999999/redrive")).status_code == 404
    assert (await client.get("/api/dead-letters/0")).status_code == 400
    assert (await client.get("/api/dead-letters", params={"cause": "nope"})).status_code == 400


async def test_a_failed_delivery_is_redriven_once_the_receiver_is_fixed(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/broken-{unique}"
    receiver.statuses[path] = 500
    sid = await _subscribe(client, running, new_subscription(receiver.url + path, f"broken-{unique}"))
    js = running.worker.js
    first = await client.post("/api/events", json={"event_type": "issue.created", "entity_id": unique})
    second = await client.post("/api/events", json={"event_type": "issue.updated", "entity_id": unique})
    mismatched = await js.publish("turbo.issue.created", envelope("issue.deleted", unique))
    letters = await _wait_letters(client, 3, subscription_id=sid)
    by_cause = sorted(letters, key=lambda x: x["seq"])
    failed = [x for x in by_cause if x["cause"] == "delivery_failed"]
    assert [x["event"]["event_id"] for x in sorted(failed, key=lambda x: x["source_seq"])] == [
        first.json()["event_id"],
        second.json()["event_id"],
    ]
    one = next(x for x in failed if x["event"]["event_id"] == first.json()["event_id"])
    assert one["last_attempt"]["response_code"] == 500 and one["last_attempt"]["outcome"] == "failed"
    assert "attempts exhausted" in one["reason"] and one["raw"] is None and one["delivery_id"]
    attempts_before = len(receiver.at(path))

    # Paused: the one "not active" rule of retry, recover and replay applies.
    await client.patch(f"/api/subscriptions/{sid}", json={"active": False})
    await wait_for(lambda: uuid.UUID(sid) not in running.worker.running, what="the pause to reach the worker")
    paused = await client.post(f"/api/dead-letters/{one['seq']}/redrive")
    assert paused.status_code == 409 and "paused" in paused.json()["detail"]
    assert (await client.post(f"/api/subscriptions/{sid}/dead-letters/redrive")).status_code == 409
    await client.patch(f"/api/subscriptions/{sid}", json={"active": True})
    await wait_for(lambda: uuid.UUID(sid) in running.worker.running, what="the resume to reach the worker")

    receiver.statuses[path] = 200
    redriven = await client.post(f"/api/dead-letters/{one['seq']}/redrive")
    assert redriven.status_code == 202, redriven.text
    assert redriven.json() == {
        "seq": one["seq"],
        "subscription_id": sid,
        "delivery_id": one["delivery_id"],
        "event_id": first.json()["event_id"],
        "queued": True,
    }

    async def delivered_again() -> bool:
        detail = (await client.get(f"/api/deliveries/{one['delivery_id']}")).json()
        return bool(detail.get("status") == "success")

    await wait_for(delivered_again, what="the redriven delivery in the log")
    detail = (await client.get(f"/api/deliveries/{one['delivery_id']}")).json()
    assert detail["attempt_log"][-1]["trigger"] == "manual" and detail["attempt_log"][-1]["response_code"] == 200
    assert len(receiver.at(path)) == attempts_before + 1
    assert (await client.get(f"/api/dead-letters/{one['seq']}")).status_code == 404  # out of the dead letters

    # All of the subscription's: the failed one is queued, the mismatched one is left with why.
    everything = await client.post(f"/api/subscriptions/{sid}/dead-letters/redrive")
    assert everything.status_code == 202, everything.text
    summary = everything.json()
    assert summary["subscription_id"] == sid and summary["queued"] == 1 and summary["refused"] == 1
    (refusal,) = summary["refusals"]
    assert "still refused" in refusal["reason"] and not summary["truncated"]
    await wait_for(lambda: len(receiver.at(path)) == attempts_before + 2, what="the second redrive")
    assert receiver.at(path)[-1].headers["webhook-id"] == next(
        x["delivery_id"] for x in failed if x["event"]["event_id"] == second.json()["event_id"]
    )
    left = await _letters(client, subscription_id=sid)
    assert [x["source_seq"] for x in left] == [mismatched.seq]
    assert (await client.post(f"/api/subscriptions/{uuid.uuid4()}/dead-letters/redrive")).status_code == 404


async def test_a_refused_message_that_decodes_today_is_delivered_on_redrive(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/later-{unique}"
    sid = await _subscribe(client, running, new_subscription(receiver.url + path, f"later-{unique}"))
    event = build_event(event_type="issue.created", entity_id=unique)
    # A letter as an older release's stricter rules wrote it: the bytes are an event today.
    letter = DeadLetter(
        subscription_id=uuid.UUID(sid),
        delivery_id=None,
        stream_seq=1,
        dead_at=datetime.now(UTC),
        cause="refused",
        reason="refused by an older release",
        subject="turbo.issue.created",
        raw=encode_event(event),
    )
    ack = await running.worker.js.publish(
        f"{DEAD_LETTER_SUBJECT_ROOT}.{uuid.UUID(sid).hex}", msgspec.json.encode(letter)
    )
    redriven = await client.post(f"/api/dead-letters/{ack.seq}/redrive")
    assert redriven.status_code == 202, redriven.text
    assert redriven.json()["event_id"] == str(event.event_id)
    await wait_for(lambda: len(receiver.at(path)) == 1, what="the redriven event")
    assert msgspec.json.decode(receiver.at(path)[0].body)["event_id"] == str(event.event_id)
    assert await _letters(client, subscription_id=sid) == []


async def test_parked_attempts_and_foreign_messages_are_listed_read_only(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    sid = await _subscribe(client, running, new_subscription(receiver.url + f"/ro-{unique}", f"ro-{unique}"))
    js = running.worker.js
    garbage = b"\xff not an attempt batch " + unique.encode()
    parked_from = await js.publish(f"{ATTEMPTS_SUBJECT_ROOT}.{unique}", garbage)

    async def parked() -> list[dict[str, Any]]:
        return [x for x in await _letters(client, cause="log_refused") if x["source_seq"] == parked_from.seq]

    async def is_parked() -> bool:
        return bool(await parked())

    await wait_for(is_parked, what="the recorder to park the message")
    (item,) = await parked()
    assert item["source_stream"] == "TURBOHOOKS_ATTEMPTS" and "not an attempt batch" in item["reason"]
    assert base64.b64decode(item["raw"]) == garbage and not item["redrivable"] and "cannot be redriven" in item["note"]
    refused = await client.post(f"/api/dead-letters/{item['seq']}/redrive")
    assert refused.status_code == 409 and "cannot be redriven" in refused.json()["detail"]
    assert await _letters(client, subscription_id=sid, cause="log_refused") == []

    # Anything else published on the dead-letter stream: listed as unreadable, never a 500.
    subject = f"{DEAD_LETTER_SUBJECT_ROOT}.{uuid.UUID(sid).hex}"
    for payload in (b"\x00\xff", b"[" * 5000 + b"]" * 5000, b'{"subscription_id": 1}', b""):
        await js.publish(subject, payload)
    items = await _wait_letters(client, 4, subscription_id=sid)
    assert [x["cause"] for x in items] == ["unreadable"] * 4
    assert all(not x["redrivable"] for x in items)
    for x in items:
        assert (await client.get(f"/api/dead-letters/{x['seq']}")).status_code == 200
    assert (await client.post(f"/api/dead-letters/{items[0]['seq']}/redrive")).status_code == 409
    summary = (await client.post(f"/api/subscriptions/{sid}/dead-letters/redrive")).json()
    assert summary["queued"] == 0 and summary["refused"] == 4
