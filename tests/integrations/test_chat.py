"""Slack, Discord and Zapier through the engine's real Worker, each against its local fake."""

from __future__ import annotations

import uuid

from consumers import delivery_id_for, verify
from tests.support import Running, settled, wait_for

from .fakes import FakeDiscord, FakeSlack, FakeZapier

LINK = "https://turbo.example.com/{entity_type}s/{entity_id}"
ISSUE = {
    "title": "Bug in login",
    "description": "Safari refuses <script> & emoji 🚀",
    "status": "open",
    "priority": "critical",
    "assignee": {"name": "Bob Builder"},
}


async def _status(running: Running, sub_id: uuid.UUID, event_id: uuid.UUID, status: str) -> None:
    await settled(running, sub_id, event_id, status=status)


async def test_slack_gets_block_kit_and_its_429_is_honoured(running: Running, slack: FakeSlack, unique: str) -> None:
    sub = await running.subscribe(
        name=f"slack-{unique}",
        url=slack.hook,
        event_types=["issue.*"],
        integration="slack",
        integration_config={"link_template": LINK},
    )
    slack.script(429, "rate_limited", {"Retry-After": "1"})
    ack = await running.engine.publisher.emit(
        event_type="issue.created", entity_id=unique, data={"current": ISSUE}, actor={"type": "user", "name": "ada"}
    )
    await _status(running, sub.id, ack.event_id, "success")
    first, second = slack.calls
    assert second.at - first.at >= 0.9, "waited for Retry-After (1s), not the 0.2s schedule"
    assert second.problems == []
    message = second.json
    header, section = message["blocks"][0], message["blocks"][1]
    assert header["text"]["text"] == "Issue created"
    assert f"<https://turbo.example.com/issues/{unique}|Bug in login>" in section["text"]["text"]
    assert "&lt;script&gt; &amp; emoji 🚀" in section["text"]["text"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in section["fields"]}
    assert fields["*Status*"] == "open" and fields["*Priority*"] == "critical" and fields["*By*"] == "ada"
    assert "webhook-signature" not in second.headers, "Slack deliveries are not signed"
    detail = await running.engine.deliveries.get(delivery_id_for(sub.id, ack.event_id))
    assert [a.response_code for a in detail.attempt_log] == [429, 200]


async def test_slack_refusal_fails_at_once(running: Running, slack: FakeSlack, unique: str) -> None:
    sub = await running.subscribe(
        name=f"slack-gone-{unique}", url=slack.hook, event_types=["tag.created"], integration="slack"
    )
    slack.script(403, "action_prohibited")
    ack = await running.engine.publisher.emit(event_type="tag.created", entity_id=unique)
    await _status(running, sub.id, ack.event_id, "failed")
    assert len(slack.calls) == 1


async def test_discord_gets_an_embed_and_its_429_body_is_honoured(
    running: Running, discord: FakeDiscord, unique: str
) -> None:
    sub = await running.subscribe(
        name=f"discord-{unique}",
        url=discord.hook,
        event_types=["issue.*"],
        integration="discord",
        integration_config={"username": "Turbo"},
    )
    discord.rate_limit(1.2)  # in the JSON body only: no Retry-After header
    ack = await running.engine.publisher.emit(
        event_type="issue.assigned",
        entity_id=unique,
        data={"current": {**ISSUE, "title": "@everyone " + "x" * 300}},
        context={"project_id": "p-1"},
    )
    await _status(running, sub.id, ack.event_id, "success")
    first, second = discord.calls
    assert second.at - first.at >= 1.1, "waited for the body's retry_after (1.2s)"
    assert second.problems == []
    message = second.json
    embed = message["embeds"][0]
    assert message["allowed_mentions"] == {"parse": []} and message["username"] == "Turbo"
    assert len(embed["title"]) == 256 and embed["title"].endswith("…")
    assert embed["color"] == 0xD92D20, "critical is red"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Assignee"] == "Bob Builder" and fields["Project"] == "p-1"


async def test_zapier_gets_a_flat_signed_object(running: Running, zapier: FakeZapier, unique: str) -> None:
    sub = await running.subscribe(
        name=f"zapier-{unique}", url=zapier.hook, event_types=["comment.created"], integration="zapier"
    )
    ack = await running.engine.publisher.emit(
        event_type="comment.created",
        entity_id=unique,
        data={"current": {"content": "Ship it", "mentioned": ["ada", "bob"], "author": {"name": "Cy"}}},
        context={"issue_id": "42"},
        actor={"type": "user", "name": "cy@example.com"},
    )
    await _status(running, sub.id, ack.event_id, "success")
    (call,) = zapier.calls
    assert call.problems == []
    verify(sub.secret, call.headers, call.body)
    flat = call.json
    assert flat["event_id"] == str(ack.event_id)
    assert flat["data.current.content"] == "Ship it"
    assert flat["data.current.mentioned"] == "ada, bob"
    assert flat["data.current.author.name"] == "Cy"
    assert flat["actor.name"] == "cy@example.com" and flat["context.issue_id"] == "42"
    assert flat["summary"] == "Comment created by cy@example.com: Ship it"


async def test_zapiers_410_for_a_deleted_zap_disables_the_subscription(
    running: Running, zapier: FakeZapier, unique: str
) -> None:
    sub = await running.subscribe(name=f"zap-gone-{unique}", url=zapier.hook, event_types=["*"], integration="zapier")
    zapier.script(410, '{"status": "error", "message": "Zap is off"}')
    await running.engine.publisher.emit(event_type="tag.created", entity_id=unique)

    async def disabled() -> bool:
        return (await running.engine.subscriptions.get(sub.id)).status == "disabled"

    await wait_for(disabled, what="the subscription to be disabled")
