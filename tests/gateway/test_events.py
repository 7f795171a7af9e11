"""The catalog, publishing over HTTP, and event history read from the stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from consumers import Engine
from streams import EVENT_CATALOG, EXTERNAL_EVENT_TYPES, KNOWN_EVENT_TYPES


async def _publish(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/events", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_event_types_are_the_catalog(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/event-types", params={"source": "turbo"})).json()
    assert body["total"] == len(EVENT_CATALOG) == len(body["items"])
    first = body["items"][0]
    assert first["event_type"] == "project.created" and first["subject"] == "turbo.project.created"
    assert {"entity_type", "action", "trigger", "description"} <= first.keys()


async def test_event_types_list_the_external_ones_with_their_source(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/event-types")).json()
    assert [item["event_type"] for item in body["items"]] == list(KNOWN_EVENT_TYPES)
    assert body["total"] == len(KNOWN_EVENT_TYPES) and body["by_source"] == {"turbo": 59, "github": 10, "turbohooks": 4}
    github = (await client.get("/api/event-types", params={"source": "github"})).json()
    assert [item["event_type"] for item in github["items"]] == list(EXTERNAL_EVENT_TYPES)
    assert {item["source"] for item in github["items"]} == {"github"}
    issues = next(item for item in github["items"] if item["event_type"] == "external.github.issues")
    assert issues["subject"] == "turbo.external.github.issues"
    refused = await client.get("/api/event-types", params={"source": "gitlab"})
    assert refused.status_code == 400 and "source" in refused.text


async def test_publish_returns_id_and_sequence_and_the_stream_has_it(
    client: httpx.AsyncClient, engine: Engine, unique: str
) -> None:
    event_id = str(uuid.uuid4())
    ack = await _publish(
        client,
        event_type="issue.created",
        entity_id=unique,
        event_id=event_id,
        data={"current": {"title": "Bug in login"}},
        context={"project_id": "p-1"},
        actor={"type": "user", "name": "ada@example.com"},
    )
    assert ack["event_id"] == event_id and ack["subject"] == "turbo.issue.created" and not ack["duplicate"]
    stored = await engine.js.get_msg(engine.settings.stream_name, ack["seq"])
    assert event_id.encode() in (stored.data or b"")
    again = await _publish(client, event_type="issue.created", entity_id=unique, event_id=event_id)
    assert again["duplicate"] and again["seq"] == ack["seq"]

    got = (await client.get(f"/api/events/{event_id}")).json()
    assert got["seq"] == ack["seq"] and got["subject"] == "turbo.issue.created"
    event = got["event"]
    assert event["event_id"] == event_id and event["entity_id"] == unique and event["entity_type"] == "issue"
    assert event["data"] == {"current": {"title": "Bug in login"}, "previous": None, "changes": []}
    assert event["context"] == {"project_id": "p-1"} and event["actor"]["name"] == "ada@example.com"


async def test_an_integer_entity_id_is_accepted(client: httpx.AsyncClient) -> None:
    ack = await _publish(client, event_type="tag.created", entity_id=42)
    assert (await client.get(f"/api/events/{ack['event_id']}")).json()["event"]["entity_id"] == "42"


async def test_publish_refusals_name_the_field(client: httpx.AsyncClient, unique: str) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"event_type": "issue.exploded", "entity_id": unique}, 422, "event_type"),
        ({"event_type": "issue.created", "entity_id": ""}, 422, "entity_id"),
        ({"event_type": "issue.created", "entity_id": unique, "entity_type": "comment"}, 422, "entity_type"),
        ({"event_type": "issue.created", "entity_id": unique, "timestamp": "2026-01-01T00:00:00"}, 422, "timestamp"),
        ({"event_type": "issue.created", "entity_id": unique, "colour": "red"}, 400, "colour"),
        ({"event_type": "issue.created", "entity_id": unique, "data": {"now": {}}}, 400, "data.now"),
        ({"event_type": "issue.created", "entity_id": unique, "actor": {"type": "robot"}}, 400, "actor.type"),
        ({"event_type": "issue.created", "entity_id": unique, "context": {"x_id": "1"}}, 400, "context.x_id"),
        ({"event_type": "issue.created", "entity_id": True}, 400, "entity_id"),
        ({"event_type": "issue.created", "entity_id": unique, "event_id": "not-a-uuid"}, 400, "event_id"),
        ({"entity_id": unique}, 400, "event_type"),
        ({"event_type": "issue.created", "entity_id": unique, "causation": "nope;depth=1"}, 422, "causation"),
        (
            {"event_type": "issue.created", "entity_id": unique, "causation": f"{uuid.uuid4()};depth=-1"},
            422,
            "causation",
        ),
    ]
    for body, status, field in cases:
        response = await client.post("/api/events", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["field"] == field, (body, problem)
        assert problem["errors"][0]["field"] == field and problem["title"]


async def test_an_event_answering_a_delivery_carries_its_chain(client: httpx.AsyncClient, unique: str) -> None:
    cause, sub_id = uuid.uuid4(), uuid.uuid4()
    answer = await _publish(
        client, event_type="comment.created", entity_id=unique, causation=f"{cause};depth=3;subscription={sub_id}"
    )
    stored = (await client.get(f"/api/events/{answer['event_id']}")).json()
    event = stored["event"]
    assert event["causation_id"] == str(cause)
    assert event["chain"] == {"depth": 3, "subscription_id": str(sub_id)}


async def test_history_newest_first_with_filters_and_paging(client: httpx.AsyncClient, unique: str) -> None:
    acks = [
        await _publish(client, event_type=event_type, entity_id=unique)
        for event_type in ("issue.created", "comment.created", "issue.updated", "issue.closed")
    ]
    page = (await client.get("/api/events", params={"entity_id": unique, "since": "5m"})).json()
    assert [item["seq"] for item in page["items"]] == [a["seq"] for a in reversed(acks)]
    assert not page["truncated"]

    issues = (await client.get("/api/events", params={"entity_id": unique, "event_type": "issue.*"})).json()
    assert [i["event"]["event_type"] for i in issues["items"]] == ["issue.closed", "issue.updated", "issue.created"]

    first = (await client.get("/api/events", params={"entity_id": unique, "limit": 2})).json()
    assert [i["seq"] for i in first["items"]] == [acks[3]["seq"], acks[2]["seq"]]
    assert first["next_before_seq"] == acks[2]["seq"]
    rest = (
        await client.get("/api/events", params={"entity_id": unique, "before_seq": first["next_before_seq"]})
    ).json()
    assert [i["seq"] for i in rest["items"]] == [acks[1]["seq"], acks[0]["seq"]]

    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await client.get("/api/events", params={"since": later})).json()["items"] == []
    bounded = (await client.get("/api/events", params={"entity_id": unique, "until": "2020-01-01T00:00:00Z"})).json()
    assert bounded["items"] == []


async def test_history_query_refusals(client: httpx.AsyncClient) -> None:
    for params, status, field in [
        ({"event_type": "issue.exploded"}, 422, "event_type"),
        ({"since": "yesterday"}, 422, "since"),
        ({"until": "99999999999999999999d"}, 422, "until"),
        ({"limit": 0}, 400, "limit"),
        ({"limit": "many"}, 400, "limit"),
        ({"before_seq": -1}, 400, "before_seq"),
    ]:
        response = await client.get("/api/events", params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["field"] == field


async def test_unknown_event_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/events/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/events/not-a-uuid")).status_code == 404
