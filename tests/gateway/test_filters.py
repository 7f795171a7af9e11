"""Filters through the API and the CLI: refused naming the path and operator, nothing saved; test sends exempt."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli_app
from streams import Settings
from tests.support import Receiver, engine_cli_env

from .conftest import new_subscription


@pytest.mark.parametrize(
    ("filters", "field", "message"),
    [
        ({"data.current.priority": {"$gtt": 1}}, "filters.data.current.priority.$gtt", "unknown operator"),
        (
            {"$or": [{"actor.type": "user"}, {"data.current.x": {"$regex": "(a)\\1"}}]},
            "filters.$or[1].data.current.x.$regex",
            "RE2",
        ),
        ({"nope.x": 1}, "filters.nope.x", "is not a field"),
        (["data.current.priority"], "filters", "object"),
    ],
)
async def test_create_and_patch_refuse_a_bad_filter_naming_the_field(
    client: httpx.AsyncClient, receiver: Receiver, unique: str, filters: object, field: str, message: str
) -> None:
    refused = await client.post(
        "/api/subscriptions", json=new_subscription(receiver.url + "/f", unique, filters=filters)
    )
    assert refused.status_code in (400, 422), refused.text
    assert refused.json()["field"] == field and message in refused.json()["detail"], refused.json()
    names = [s["name"] for s in (await client.get("/api/subscriptions")).json()["items"]]
    assert unique not in names, "nothing saved"

    created = (await client.post("/api/subscriptions", json=new_subscription(receiver.url + "/f", unique))).json()
    patched = await client.patch(f"/api/subscriptions/{created['id']}", json={"filters": filters})
    assert patched.status_code in (400, 422) and patched.json()["field"] == field, patched.text
    assert (await client.get(f"/api/subscriptions/{created['id']}")).json()["filters"] is None


async def test_a_valid_filter_is_kept_and_a_test_send_ignores_it(
    client: httpx.AsyncClient, receiver: Receiver, unique: str
) -> None:
    doc = {"data.current.priority": {"$in": ["high", "urgent"]}, "actor.type": {"$ne": "ai"}}
    created = await client.post("/api/subscriptions", json=new_subscription(receiver.url + "/t", unique, filters=doc))
    assert created.status_code == 201, created.text
    assert created.json()["filters"] == doc
    # The synthetic test event matches no real filter; it is sent anyway (it checks the endpoint).
    sent = await client.post(f"/api/subscriptions/{created.json()['id']}/test")
    assert sent.status_code == 200 and sent.json()["success"] is True, sent.text
    assert len(receiver.at("/t")) == 1


async def test_stats_report_the_skip_counts(client: httpx.AsyncClient) -> None:
    deliveries = (await client.get("/api/stats")).json()["deliveries"]
    assert {"filtered", "throttled", "loop_stopped", "skips_by_subscription"} <= deliveries.keys()


async def test_cli_filter_refusal_names_the_field(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in engine_cli_env(settings).items():
        monkeypatch.setenv(name, value)
    args = ["subscriptions", "create", "--name", "cli-filter", "--url", "http://127.0.0.1:9/x"]
    args += ["--event-types", "issue.*", "--filter", '{"data.current.priority": {"$gtt": 1}}']
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, args)
    assert result.exit_code != 0, result.output
    assert "--filter data.current.priority.$gtt: unknown operator" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
