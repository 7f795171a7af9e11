"""Hostile input: nothing makes a route answer 500, and every refusal is a problem naming the field."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway import MAX_BODY_SIZE
from tests.support import Receiver

from .conftest import new_subscription

SID = "00000000-0000-4000-8000-000000000000"
BODY_ROUTES = [
    ("POST", "/api/events"),
    ("POST", "/api/subscriptions"),
    ("PATCH", f"/api/subscriptions/{SID}"),
    ("POST", f"/api/subscriptions/{SID}/replay"),
]
NASTY_BODIES: list[bytes] = [
    b"",
    b"{",
    b"not json",
    b"[]",
    b"null",
    b"42",
    b'"a string"',
    b'{"a": 1,}',
    b'{"name": "\\ud800"}',
    b"\xff\xfe\x00",
    b"[" * 5000 + b"]" * 5000,
    b'{"event_type": {"$gt": ""}, "entity_id": [1]}',
    b'{"event_types": [null], "name": 1e999, "url": false}',
    b'{"since": 12, "from_seq": 99999999999999999999999}',
    b'{"entity_id": 1.5, "event_type": "issue.created"}',
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_malformed_bodies_are_refused_without_a_500(client: httpx.AsyncClient, method: str, path: str) -> None:
    for body in NASTY_BODIES:
        response = await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (body[:40], response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), body[:40]
        problem = response.json()
        assert problem["status"] == response.status_code and problem["title"] and problem["detail"]
        if response.status_code in (400, 422):
            assert problem["field"], (body[:40], problem)


async def test_malformed_json_names_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events", content=b"{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["field"] == "body" and response.json()["type"] == "urn:turbohooks:problem:invalid-request"


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_bodies_over_the_limit_are_413(client: httpx.AsyncClient, method: str, path: str) -> None:
    huge = b'{"name": "' + b"x" * MAX_BODY_SIZE + b'"}'
    response = await client.request(method, path, content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["type"] == "urn:turbohooks:problem:body-too-large"
    assert f"larger than {MAX_BODY_SIZE} bytes" in response.json()["detail"]


async def test_a_body_just_under_the_limit_is_read(client: httpx.AsyncClient, unique: str) -> None:
    filler = "x" * (MAX_BODY_SIZE - 200)
    body = {"event_type": "issue.created", "entity_id": unique, "data": {"current": {"blob": filler}}}
    assert (await client.post("/api/events", json=body)).status_code == 201


@pytest.mark.parametrize(
    "path",
    [
        "/api/subscriptions/not-a-uuid",
        "/api/subscriptions/1234",
        "/api/deliveries/%00",
        "/api/deliveries/" + "a" * 5000,
        "/api/events/../../etc/passwd",
        "/api/subscriptions/%F0%9F%92%A9/test",
    ],
)
async def test_bad_ids_in_paths_are_404(client: httpx.AsyncClient, path: str) -> None:
    for method in ("GET", "POST", "PATCH", "DELETE"):
        response = await client.request(method, path)
        assert response.status_code in (404, 405), (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/events", {"limit": "1e3"}),
        ("/api/events", {"before_seq": "99999999999999999999999"}),
        ("/api/events", {"since": "x" * 100}),
        ("/api/events", {"since": "\x00"}),
        ("/api/events", {"until": "-5m"}),
        ("/api/events", {"event_type": "turbo.>"}),
        ("/api/events", {"event_type": ""}),
        ("/api/subscriptions", {"status": "ACTIVE"}),
        ("/api/subscriptions", {"offset": "99999999999999999999"}),
        ("/api/deliveries", {"since": "0001-01-01T00:00:00+14:00"}),
        ("/api/deliveries", {"until": "9999-12-31T23:59:59-14:00"}),
        ("/api/stats", {"window": "99999999999w"}),
        ("/api/stats", {"window": ""}),
        (f"/api/subscriptions/{SID}/recover", {"since": "forever"}),
    ],
)
async def test_bad_query_parameters_are_refused(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> None:
    method = "POST" if path.endswith("/recover") else "GET"
    response = await client.request(method, path, params=params)
    assert response.status_code in (400, 404, 422), (params, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    if response.status_code != 404:
        assert response.json()["field"] in params, response.json()


async def test_patch_refusals_change_nothing(client: httpx.AsyncClient, receiver: Receiver, unique: str) -> None:
    created = (await client.post("/api/subscriptions", json=new_subscription(receiver.url + "/x", unique))).json()
    path = f"/api/subscriptions/{created['id']}"
    for body, status, field in [
        ({"name": "new-name", "url": "http://10.1.2.3/"}, 422, "url"),
        ({"integration": "slack"}, 400, "integration"),
        ({"headers": {"bad header": "x"}}, 422, "headers.bad header"),
        ({"retry_schedule": [-1]}, 422, "retry_schedule[0]"),
        ({"filters": {"k": "\u0000"}}, 422, "filters.k"),
    ]:
        response = await client.patch(path, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field
    after = (await client.get(path)).json()
    assert after["name"] == unique and after["url"] == receiver.url + "/x"
    assert (await client.patch(path, json={})).json()["updated_at"] == created["updated_at"]


async def test_wrong_methods_are_405_problems(client: httpx.AsyncClient) -> None:
    response = await client.put(f"/api/subscriptions/{uuid.uuid4()}", json={})
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
