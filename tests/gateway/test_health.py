"""/health, /ready (and what it says when a part is down), /metrics."""

from __future__ import annotations

import dataclasses

import httpx
import msgspec
import pytest

from consumers import Database, DeliveryStore, Engine, SubscriptionStore
from gateway import create_app
from streams import Settings, connect_nats

from .conftest import AUTH, BASE_URL, TOKEN


def _client(engine: Engine) -> httpx.AsyncClient:
    app = create_app(engine, admin_token=TOKEN)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers=AUTH)


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = (await client.get("/ready")).json()
    assert ready["status"] == "ready"
    assert [(c["name"], c["ok"]) for c in ready["checks"]] == [("nats", True), ("streams", True), ("database", True)]


async def test_ready_names_the_failed_parts(engine: Engine, settings: Settings) -> None:
    gone = Database("sqlite+aiosqlite:////nonexistent-dir/turbohooks.db")
    broken = dataclasses.replace(
        engine,
        settings=msgspec.structs.replace(settings, stream_name="NO_SUCH_STREAM"),
        db=gone,
        deliveries=DeliveryStore(gone),
        subscriptions=SubscriptionStore(gone),
    )
    async with _client(broken) as http:
        response = await http.get("/ready")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["field"] == "streams" and "NO_SUCH_STREAM" in problem["detail"]
        assert [e["field"] for e in problem["errors"]] == ["streams", "database"]
        # /metrics still answers, and says the figures could not be read.
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and 'turbohooks_metrics_refresh_ok{process="gateway"} 0.0' in metrics.text
        assert (await http.get("/health")).status_code == 200

    nc = await connect_nats(settings, name="gateway-test-closed")
    await nc.close()
    async with _client(dataclasses.replace(engine, nc=nc, js=nc.jetstream())) as http:
        problem = (await http.get("/ready")).json()
        assert problem["status"] == 503 and [e["field"] for e in problem["errors"]] == ["nats", "streams"]
        for path in ("/api/events", "/api/events/00000000-0000-4000-8000-000000000000"):
            response = await http.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["type"] == "urn:turbohooks:problem:unavailable"
            assert response.headers["retry-after"] == "5"


async def test_a_bug_is_a_logged_500_problem(
    client: httpx.AsyncClient, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug in the store")

    monkeypatch.setattr(engine.deliveries, "stats", broken)
    response = await client.get("/api/stats")
    assert response.status_code == 500
    assert response.json() == {
        "type": "urn:turbohooks:problem:internal",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "an unexpected error occurred; it is logged",
    }
    assert any(r.exc_info and "a bug in the store" in str(r.exc_info[1]) for r in caplog.records)


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/api/event-types")
    await client.get("/api/subscriptions/00000000-0000-0000-0000-000000000000")
    await client.get("/no/such/route")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert (
        'turbohooks_api_requests_total{method="GET",process="gateway",route="/api/event-types",status="200"} 1.0'
        in text
    )
    assert (
        'turbohooks_api_requests_total{method="GET",process="gateway",'
        'route="/api/subscriptions/{subscription_id}",status="404"} 1.0' in text
    )
    assert 'turbohooks_api_requests_total{method="GET",process="gateway",route="unmatched",status="404"} 1.0' in text
    assert (
        'turbohooks_metrics_refresh_ok{process="gateway"} 1.0' in text
        and 'turbohooks_subscriptions{process="gateway",status="active"} 0.0' in text
    )


async def test_each_app_has_its_own_registry(engine: Engine) -> None:
    async with _client(engine) as first, _client(engine) as second:
        await first.get("/api/event-types")
        assert "/api/event-types" not in (await second.get("/metrics")).text


async def test_an_unreachable_database_is_a_503_problem_on_every_route_that_reads_it(engine: Engine) -> None:
    # The engine's database broken for real (a file that cannot be opened), not mocked: what the
    # SQL side raises (DatabaseUnavailableError once translated) is answered 503 like NATS being down.
    gone = Database("sqlite+aiosqlite:////nonexistent-dir/turbohooks.db")
    broken = dataclasses.replace(engine, db=gone, deliveries=DeliveryStore(gone), subscriptions=SubscriptionStore(gone))
    some = "00000000-0000-4000-8000-000000000000"
    async with _client(broken) as http:
        for method, path, params in [
            ("GET", "/api/subscriptions", {}),
            ("GET", "/api/deliveries", {}),
            ("GET", f"/api/deliveries/{some}", {}),
            ("POST", f"/api/deliveries/{some}/retry", {}),
            ("GET", "/api/stats", {}),
        ]:
            response = await http.request(method, path, params=params)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["retry-after"] == "5"
            problem = response.json()
            assert problem["type"] == "urn:turbohooks:problem:unavailable" and "database" in problem["detail"]
