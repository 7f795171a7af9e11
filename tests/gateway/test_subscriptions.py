"""Subscriptions through the API: create, list, show, change, pause and resume, rotate, test, delete."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec

from consumers import open_engine, verify
from gateway import create_app
from streams import Settings
from tests.support import Receiver, Running, wait_for

from .conftest import AUTH, BASE_URL, new_subscription


async def _create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/subscriptions", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_create_show_list_update_delete(client: httpx.AsyncClient, receiver: Receiver, unique: str) -> None:
    created = await _create(
        client,
        new_subscription(receiver.url + "/crud", f"crud-{unique}", headers={"X-Team": "core"}, retry_schedule=[1, 60]),
    )
    sid = created["id"]
    assert created["secret"].startswith("whsec_")
    assert created["status"] == "active" and created["headers"] == {"X-Team": "core"}
    assert created["retry_schedule"] == [1.0, 60.0]

    shown = (await client.get(f"/api/subscriptions/{sid}")).json()
    assert "secret" not in shown and shown["name"] == f"crud-{unique}"

    second = await _create(client, new_subscription(receiver.url + "/two", f"two-{unique}", active=False))
    assert second["status"] == "paused"
    page = (await client.get("/api/subscriptions", params={"limit": 1})).json()
    assert page["total"] == 2 and len(page["items"]) == 1 and page["items"][0]["id"] == sid
    assert "secret" not in page["items"][0]
    rest = (await client.get("/api/subscriptions", params={"limit": 1, "offset": 1})).json()
    assert rest["items"][0]["id"] == second["id"]
    paused = (await client.get("/api/subscriptions", params={"status": "paused"})).json()
    assert [s["id"] for s in paused["items"]] == [second["id"]]

    changed = await client.patch(
        f"/api/subscriptions/{sid}", json={"event_types": ["comment.*"], "retry_schedule": None}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["comment.*"] and changed.json()["retry_schedule"] is None
    assert "secret" not in changed.json()

    rotated = await client.post(f"/api/subscriptions/{sid}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"] and rotated.json()["previous_secret_expires_at"]

    assert (await client.delete(f"/api/subscriptions/{sid}")).status_code == 204
    for method in ("GET", "DELETE", "PATCH"):
        gone = await client.request(method, f"/api/subscriptions/{sid}", json={} if method == "PATCH" else None)
        assert gone.status_code == 404, (method, gone.text)
        assert gone.json()["type"] == "urn:turbohooks:problem:not-found"


async def test_refusals_name_the_field(client: httpx.AsyncClient, receiver: Receiver, unique: str) -> None:
    good = new_subscription(receiver.url + "/r", f"r-{unique}")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "url": "http://10.0.0.1/hook"}, 422, "url"),
        ({**good, "url": "https://169.254.169.254/latest"}, 422, "url"),
        ({**good, "url": "ftp://example.com/"}, 422, "url"),
        ({**good, "url": "not a url"}, 422, "url"),
        ({**good, "event_types": ["issue.exploded"]}, 422, "event_types[0]"),
        ({**good, "event_types": []}, 422, "event_types"),
        ({**good, "headers": {"webhook-signature": "x"}}, 422, "headers.webhook-signature"),
        ({**good, "integration": "carrier-pigeon"}, 422, "integration"),
        ({**good, "max_in_flight": 0}, 400, "max_in_flight"),
        ({**good, "name": "a\u0000b"}, 422, "name"),
        ({**good, "colour": "red"}, 400, "colour"),
        ({**good, "active": "maybe"}, 400, "active"),
        ({**good, "event_types": "issue.*"}, 400, "event_types"),
        ({"url": good["url"], "event_types": ["*"]}, 400, "name"),
    ]
    for body, status, field in cases:
        response = await client.post("/api/subscriptions", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
    assert (await client.get("/api/subscriptions")).json()["total"] == 0

    await _create(client, good)
    taken = await client.post("/api/subscriptions", json={**good, "url": receiver.url + "/other"})
    assert taken.status_code == 409 and taken.json()["type"] == "urn:turbohooks:problem:conflict"


async def test_plain_http_is_refused_unless_allowed(settings: Settings, unique: str) -> None:
    strict = msgspec.structs.replace(settings, webhook_allow_http=False)
    async with open_engine(strict, name="strict") as engine:
        app = create_app(engine, admin_token=AUTH["Authorization"].removeprefix("Bearer "))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=AUTH) as http:
            response = await http.post(
                "/api/subscriptions", json=new_subscription("http://127.0.0.1:9/x", f"plain-{unique}")
            )
    assert response.status_code == 422
    assert response.json()["field"] == "url" and "WEBHOOK_ALLOW_HTTP" in response.json()["detail"]


async def test_pause_and_resume_reach_a_running_worker(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    sid = uuid.UUID((await _create(client, new_subscription(receiver.url + "/p", f"p-{unique}")))["id"])
    await wait_for(lambda: sid in running.worker.running, timeout=5, what="the worker to start it")
    paused = await client.patch(f"/api/subscriptions/{sid}", json={"active": False})
    assert paused.json()["status"] == "paused"
    await wait_for(lambda: sid not in running.worker.running, timeout=5, what="the worker to pause it")
    resumed = await client.patch(f"/api/subscriptions/{sid}", json={"active": True})
    assert resumed.json()["status"] == "active"
    await wait_for(lambda: sid in running.worker.running, timeout=5, what="the worker to resume it")
    assert (await client.delete(f"/api/subscriptions/{sid}")).status_code == 204
    await wait_for(lambda: sid not in running.worker.running, timeout=5, what="the worker to drop it")


async def test_test_send_is_signed_and_reports_the_answer(
    client: httpx.AsyncClient, receiver: Receiver, unique: str
) -> None:
    created = await _create(
        client,
        new_subscription(receiver.url + "/t", f"t-{unique}", event_types=["comment.*"], headers={"X-Team": "core"}),
    )
    result = (await client.post(f"/api/subscriptions/{created['id']}/test")).json()
    assert result["success"] and result["status"] == 200 and result["error"] is None
    assert result["event_type"] == "comment.created" and result["latency_ms"] >= 0
    assert result["body"].startswith("answer 200") and result["truncated"]
    assert len(result["body"]) == 4096  # WEBHOOK_RESPONSE_BODY_CAP
    got = receiver.at("/t")[0]
    verify(created["secret"], got.headers, got.body)
    assert got.headers["X-Team"] == "core" and got.headers["X-Turbo-Event"] == "comment.created"
    assert msgspec.json.decode(got.body)["event_id"] == result["event_id"]

    receiver.statuses["/t"] = 503
    failed = (await client.post(f"/api/subscriptions/{created['id']}/test")).json()
    assert not failed["success"] and failed["status"] == 503

    moved = await client.patch(f"/api/subscriptions/{created['id']}", json={"url": "http://127.0.0.1:9/closed"})
    assert moved.status_code == 200
    unreachable = (await client.post(f"/api/subscriptions/{created['id']}/test")).json()
    assert unreachable["status"] is None and "refused" in unreachable["error"]
    # A test send is not a delivery: the log stays empty.
    assert (await client.get("/api/deliveries")).json()["total"] == 0
