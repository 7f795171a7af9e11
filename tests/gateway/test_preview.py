"""`POST /api/subscriptions/preview` and `turbohooks subscriptions preview`: a draft on stored events."""

from __future__ import annotations

import json

import httpx
import msgspec

from consumers import Engine
from streams import Settings
from tests.support import engine_cli_env, run_cli_async

_TEMPLATE = '{"title": {{ data.current.title|tojson }}, "who": "{{ actor.name }}"}'


async def test_api_preview_answers_bodies_and_refuses_like_a_save(
    client: httpx.AsyncClient, engine: Engine, unique: str
) -> None:
    ack = await engine.publisher.emit(
        event_type="milestone.created", entity_id=unique, data={"current": {"title": f"M {unique}"}}
    )
    draft = {"event_types": ["milestone.created"], "template": _TEMPLATE, "limit": 1000}
    response = await client.post("/api/subscriptions/preview", json=draft)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["examined"] == len(answer["items"]) and answer["send"] >= 1
    mine = next(item for item in answer["items"] if item["event_id"] == str(ack.event_id))
    assert mine["outcome"] == "send" and mine["content_type"] == "application/json"
    assert mine["stream_seq"] == ack.seq
    assert msgspec.json.decode(mine["body"]) == {"title": f"M {unique}", "who": "turbo"}
    assert await engine.subscriptions.count() == 0, "a preview saves nothing"

    for body, field in [
        ({**draft, "template": "{% if %}"}, "template"),
        ({**draft, "limit": 5000}, "limit"),
        ({"event_types": ["nothing.here"]}, "event_types[0]"),
        ({**draft, "integration": "email", "integration_config": {"to": ["ops@example.com"]}}, "template"),
    ]:
        refused = await client.post("/api/subscriptions/preview", json=body)
        assert refused.status_code in (400, 422), (body, refused.text)
        assert refused.json()["field"] == field, refused.json()


async def test_cli_preview_prints_what_would_be_sent(settings: Settings, engine: Engine, unique: str) -> None:
    ack = await engine.publisher.emit(
        event_type="milestone.created", entity_id=unique, data={"current": {"title": f"CLI {unique}"}}
    )
    env = engine_cli_env(settings, columns=200)
    args = ("subscriptions", "preview", "--event-types", "milestone.created", "--template", _TEMPLATE)
    shown = await run_cli_async(*args, "--limit", "1000", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    mine = next(i for i in json.loads(shown.stdout)["items"] if i["event_id"] == str(ack.event_id))
    assert json.loads(mine["body"])["title"] == f"CLI {unique}"
    table = await run_cli_async(*args, "--limit", "1", env=env)
    assert table.returncode == 0, table.stderr
    assert "1 stored events: 1 would be sent" in table.stdout and f"CLI {unique}" in table.stdout
    bad = await run_cli_async("subscriptions", "preview", "--event-types", "issue.*", "--template", "{{ x ]}", env=env)
    assert bad.returncode != 0 and "--template" in bad.stderr and "line 1" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
