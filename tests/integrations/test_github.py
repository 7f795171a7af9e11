"""GitHub: the mirror through the engine's Worker against a fake REST API; the inbound side."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import msgspec
import pytest
from nats.js import JetStreamContext

from consumers import delivery_id_for
from gateway.operations import queue_redelivery
from integrations import (
    INTEGRATIONS,
    GitHubPlan,
    GitHubTransport,
    TransportContext,
    github_event,
    receive_github_webhook,
    verify_github_signature,
)
from integrations.github import github_transport
from streams import Event, EventValidationError, Settings, build_event, decode_event, encode_event
from streams.settings import load_config
from tests.support import Running, settled

from .fakes import FakeGitHub

CONFIG = {"repository": "octo/turbo", "token": "ghp_test", "labels": ["turbo"]}


def _config(github: FakeGitHub) -> dict[str, Any]:
    return {**CONFIG, "api_url": github.url}


async def _settled(running: Running, sub_id: uuid.UUID, event_id: uuid.UUID, attempts: int = 1) -> str:
    return (await settled(running, sub_id, event_id, attempts=attempts)).status


async def test_issues_are_mirrored_and_a_redelivery_opens_no_second_issue(
    running: Running, github: FakeGitHub, unique: str
) -> None:
    sub = await running.subscribe(
        name=f"github-{unique}",
        url=github.url,
        event_types=["issue.*", "comment.created"],
        integration="github",
        integration_config=_config(github),
        max_in_flight=1,
    )
    publisher = running.engine.publisher
    issue = {"title": "Bug in login", "description": "Safari only", "tags": [{"id": "t1", "name": "bug"}]}
    created = build_event(event_type="issue.created", entity_id=unique, data={"current": issue})
    await publisher.publish(created)
    events = [
        build_event(
            event_type="comment.created",
            entity_id=f"c-{unique}",
            data={"current": {"content": "Reproduced on 17.2"}},
            context={"issue_id": unique},
            actor={"type": "user", "name": "ada"},
        ),
        build_event(
            event_type="issue.tagged",
            entity_id=unique,
            data={"current": {**issue, "tags": [*issue["tags"], {"id": "t2", "name": "safari"}], "tag": "t2"}},
        ),
        build_event(event_type="issue.closed", entity_id=unique, data={"current": {**issue, "status": "closed"}}),
    ]
    for event in events:
        await publisher.publish(event)
    for event in [created, *events]:
        assert await _settled(running, sub.id, event.event_id) == "success"

    (mirrored,) = github.issues.values()
    assert mirrored["title"] == "Bug in login"
    assert f"<!-- turbohooks:issue={unique} -->" in mirrored["body"]
    assert mirrored["labels"] == ["turbo", "bug", "safari"]
    assert mirrored["state"] == "closed"
    (comment,) = github.comments
    assert "**ada** commented in Turbo" in comment["body"] and "Reproduced on 17.2" in comment["body"]
    assert all(call.problems == [] for call in github.calls)
    assert all(call.headers["Authorization"] == "Bearer ghp_test" for call in github.calls)

    # The same events once more (a manual retry, a replay): still one issue, one comment.
    for event in (created, events[0]):
        await queue_redelivery(running.engine, sub, encode_event(event), trigger="manual", stream_seq=None)
        assert await _settled(running, sub.id, event.event_id, attempts=2) == "success"
    assert len(github.issues) == 1 and len(github.comments) == 1
    detail = await running.engine.deliveries.get(delivery_id_for(sub.id, created.event_id))
    assert "already mirrored as #1" in (detail.attempt_log[-1].response_body or "")
    assert "ghp_test" not in str(detail.attempt_log[0].request_headers), "the token is never logged"


async def test_rate_limit_is_a_429_honouring_its_reset(running: Running, github: FakeGitHub, unique: str) -> None:
    sub = await running.subscribe(
        name=f"github-rl-{unique}",
        url=github.url,
        event_types=["issue.created"],
        integration="github",
        integration_config=_config(github),
    )
    github.rate_limit(reset_in=1.0)
    event = build_event(event_type="issue.created", entity_id=unique, data={"current": {"title": "Later"}})
    await running.engine.publisher.publish(event)
    assert await _settled(running, sub.id, event.event_id) == "success"
    first, *rest = github.calls
    assert rest[-1].at - first.at >= 0.8, "waited for X-RateLimit-Reset, not the 0.2s schedule"
    detail = await running.engine.deliveries.get(delivery_id_for(sub.id, event.event_id))
    assert [a.response_code for a in detail.attempt_log] == [429, 201]
    # The first create never happened: the retry found no issue by its marker and created one.
    assert len(github.issues) == 1


async def test_a_comment_before_its_issue_waits_and_bad_credentials_fail(
    js: JetStreamContext, settings: Settings, github: FakeGitHub, unique: str
) -> None:
    integration = INTEGRATIONS["github"]
    comment = build_event(
        event_type="comment.created",
        entity_id=f"c-{unique}",
        data={"current": {"content": "first!"}},
        context={"issue_id": unique},
    )
    async with github_transport(TransportContext(settings=settings, js=js, timeout=5.0)) as transport:
        request = integration.render(comment, encode_event(comment), github.url, _config(github))
        assert request is not None
        early = await transport.send(request, comment, github.url, _config(github))
        assert early.status == 503, "retried until its issue is mirrored"
        created = build_event(event_type="issue.created", entity_id=unique, data={"current": {"title": "T"}})
        request = integration.render(created, encode_event(created), github.url, {**_config(github), "token": "no"})
        assert request is not None
        refused = await transport.send(request, created, github.url, {**_config(github), "token": "no"})
        assert refused.status == 401 and "Bad credentials" in refused.body
        assert github.issues == {}


async def test_a_create_that_crashed_before_its_mapping_is_found_by_its_marker(
    js: JetStreamContext, settings: Settings, github: FakeGitHub, unique: str
) -> None:
    integration = INTEGRATIONS["github"]
    created = build_event(event_type="issue.created", entity_id=unique, data={"current": {"title": "Once"}})
    request = integration.render(created, encode_event(created), github.url, _config(github))
    assert request is not None
    async with github_transport(TransportContext(settings=settings, js=js, timeout=5.0)) as transport:
        assert isinstance(transport, GitHubTransport)
        assert (await transport.send(request, created, github.url, _config(github))).status == 201
        # Forget the mapping's number, as if the worker died between GitHub's answer and the write.
        plan = msgspec.json.decode(request.body, type=GitHubPlan)
        kv = await js.key_value("turbohooks_github")
        from integrations.github._transport import _key

        key = _key("issue", github.url, plan.repository, plan.turbo_issue_id)
        await kv.put(key, msgspec.json.encode({"repository": plan.repository, "turbo_issue_id": unique}))
        again = await transport.send(request, created, github.url, _config(github))
        assert again.status == 200 and len(github.issues) == 1
        assert msgspec.json.decode((await kv.get(key)).value or b"")["number"] == 1


async def test_the_token_is_read_once_when_the_transport_opens(
    js: JetStreamContext, settings: Settings, github: FakeGitHub, unique: str
) -> None:
    integration = INTEGRATIONS["github"]
    created = build_event(event_type="issue.created", entity_id=unique, data={"current": {"title": "T"}})
    named = {k: v for k, v in _config(github).items() if k != "token"} | {"token_env": "TEAM_GITHUB_TOKEN"}
    request = integration.render(created, encode_event(created), github.url, named)
    assert request is not None
    environ = {"TEAM_GITHUB_TOKEN": "ghp_test"}
    context = TransportContext(settings=settings, js=js, timeout=5.0, config=load_config(environ))
    async with github_transport(context) as transport:
        environ.clear()  # read at start: a change now is not seen until the worker restarts
        assert (await transport.send(request, created, github.url, named)).status == 201
    context = TransportContext(settings=settings, js=js, timeout=5.0, config=load_config({}))
    async with github_transport(context) as transport:
        refused = await transport.send(request, created, github.url, named)
    assert refused.status == 401 and "set TEAM_GITHUB_TOKEN" in refused.body


# -- inbound -------------------------------------------------------------------------

SECRET = "It's a Secret to Everybody"


def _signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_check_matches_githubs_example() -> None:
    # The example of GitHub's "Validating webhook deliveries" documentation.
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    verify_github_signature(SECRET, b"Hello, World!", expected)
    with pytest.raises(Exception, match="does not match"):
        verify_github_signature(SECRET, b"Hello, World?", expected)


async def test_inbound_delivery_is_published_and_a_bad_signature_is_401(
    js: JetStreamContext, settings: Settings, unique: str
) -> None:
    from publishers import EventPublisher

    payload = {
        "action": "opened",
        "issue": {"number": 7, "title": "From GitHub", "body": "Hi", "state": "open", "user": {"login": "octocat"}},
        "repository": {"full_name": "octo/turbo"},
        "sender": {"login": "octocat", "type": "User", "id": 1},
    }
    body = msgspec.json.encode(payload)
    delivery = str(uuid.uuid4())
    published: list[Event] = []

    async def record(event: Event) -> None:
        published.append(event)

    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery}
    for bad in ({}, {"X-Hub-Signature-256": _signed(body, "wrong")}, {"X-Hub-Signature-256": "sha1=abc"}):
        result = await receive_github_webhook({**headers, **bad}, body, secret=SECRET, publish=record)
        assert result.status == 401
    assert published == []
    ping = await receive_github_webhook(
        {"X-GitHub-Event": "ping", "X-Hub-Signature-256": _signed(b"{}")}, b"{}", secret=SECRET, publish=record
    )
    assert ping.status == 200 and published == []

    async with EventPublisher(settings, name=f"inbound-{unique}") as publisher:
        result = await receive_github_webhook(
            {**headers, "X-Hub-Signature-256": _signed(body)}, body, secret=SECRET, publish=publisher.publish
        )
    assert result.status == 202 and result.subject == "turbo.external.github.issues"
    stored = await js.get_last_msg(settings.stream_name, "turbo.external.github.issues")
    event = decode_event(stored.data or b"")
    assert str(event.event_id) == result.event_id
    assert event.event_type == "external.github.issues" and event.action == "opened"
    assert event.entity_id == "octo/turbo#7" and event.actor.name == "octocat" and event.actor.type == "user"
    assert event.data.current["issue"]["title"] == "From GitHub"
    assert event.context.issue_id is None and event.data.current["echo"] is False


def _comment_event() -> tuple[Event, bytes]:
    event = build_event(
        event_type="comment.created", entity_id="c-1", data={"current": {"content": "hi"}}, context={"issue_id": "i"}
    )
    return event, encode_event(event)


def test_inbound_events_link_back_and_mark_the_mirrors_echo() -> None:
    comment = {
        "action": "created",
        "issue": {"number": 3, "title": "Mirrored", "body": "x\n<!-- turbohooks:issue=issue-42 -->"},
        "comment": {"id": 9, "body": "Looks fixed to me", "user": {"login": "octocat"}},
        "repository": {"full_name": "octo/turbo"},
        "sender": {"login": "turbo-bot", "type": "User"},
    }
    body = msgspec.json.encode(comment)
    event = github_event("issue_comment", "d-1", body)
    again = github_event("issue_comment", "d-1", body)
    assert event is not None and again is not None
    assert event.event_id == again.event_id, "GitHub's redelivery of one delivery is one event"
    assert event.context.issue_id == "issue-42", "the Turbo issue the GitHub issue mirrors"
    assert event.data.current["echo"] is False and event.actor.type == "user"
    mirrored = INTEGRATIONS["github"].render(*_comment_event(), "https://x", CONFIG)
    assert mirrored is not None
    mirrored_body = msgspec.json.decode(mirrored.body, type=GitHubPlan).comment
    echoed = github_event("issue_comment", "d-2", msgspec.json.encode({**comment, "comment": {"body": mirrored_body}}))
    assert echoed is not None and echoed.actor.type == "system" and echoed.data.current["echo"] is True
    with pytest.raises(EventValidationError) as caught:
        github_event("issues; rm -rf", "d-3", body)
    assert caught.value.field == "X-GitHub-Event"
