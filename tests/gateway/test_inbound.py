"""POST /api/inbound/github: verified with X-Hub-Signature-256, published as turbo.external.github.<event>."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import httpx
import msgspec
import pytest
from litestar import Litestar

from consumers import Engine, SubscriptionCreate
from gateway import create_app
from integrations.github import turbo_marker
from streams import CausationChain, Event, decode_event
from streams.settings import GatewaySettings
from tests.support import Receiver, Running, wait_for

from .conftest import TOKEN, new_subscription

SECRET = "gh-hook-secret"


@pytest.fixture
def app(engine: Engine) -> Litestar:
    """The app with the inbound secret given at start (as ``GITHUB_WEBHOOK_SECRET`` would be)."""
    return create_app(engine, admin_token=TOKEN, gateway=GatewaySettings(github_webhook_secret=SECRET))


def _signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _last_seq(engine: Engine) -> int:
    return int((await engine.js.stream_info(engine.settings.stream_name)).state.last_seq)


async def test_signed_delivery_is_published(client: httpx.AsyncClient, engine: Engine) -> None:
    body = json.dumps({"action": "opened", "issue": {"number": 7, "title": "From GitHub"}}).encode()
    delivery = str(uuid.uuid4())
    headers = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": _signed(body),
        "Content-Type": "application/json",
    }
    # No admin token: GitHub authenticates with the signature.
    response = await client.post("/api/inbound/github", content=body, headers={**headers, "Authorization": ""})
    assert response.status_code == 202, response.text
    answer = response.json()
    msg = await engine.js.get_last_msg(engine.settings.stream_name, answer["subject"])
    assert msg.subject.startswith("turbo.external.github.issues")
    assert str(decode_event(msg.data or b"").event_id) == answer["event_id"]


@pytest.mark.parametrize(
    "signature", [None, "sha256=" + "0" * 64, "sha1=abc", _signed(b"{}", "another-secret")], ids=str
)
async def test_bad_or_missing_signature_is_401_and_publishes_nothing(
    client: httpx.AsyncClient, engine: Engine, signature: str | None
) -> None:
    body = b'{"action": "opened"}'
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()), "Authorization": ""}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    before = await _last_seq(engine)
    response = await client.post("/api/inbound/github", content=body, headers=headers)
    assert response.status_code == 401
    assert await _last_seq(engine) == before


def _delivery(event: str, body: bytes) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": _signed(body),
        "Content-Type": "application/json",
        "Authorization": "",
    }


async def test_a_pattern_naming_the_github_type_receives_the_inbound_event(
    client: httpx.AsyncClient, running: Running, receiver: Receiver, unique: str
) -> None:
    body = new_subscription(receiver.url + f"/gh-{unique}", f"gh-{unique}", event_types=["external.github.issues"])
    created = await client.post("/api/subscriptions", json=body)
    assert created.status_code == 201, created.text
    sid = uuid.UUID(created.json()["id"])
    await wait_for(lambda: sid in running.worker.running, what="the worker to start it")

    payload = json.dumps({"action": "opened", "issue": {"number": 8, "title": unique}}).encode()
    answer = await client.post("/api/inbound/github", content=payload, headers=_delivery("issues", payload))
    assert answer.status_code == 202, answer.text
    await wait_for(lambda: len(receiver.at(f"/gh-{unique}")) == 1, what="the inbound event's delivery")
    (got,) = receiver.at(f"/gh-{unique}")
    delivered = msgspec.json.decode(got.body)
    assert delivered["event_type"] == "external.github.issues" and delivered["event_id"] == answer.json()["event_id"]
    assert delivered["data"]["current"]["issue"]["title"] == unique


async def test_a_github_event_outside_the_catalog_is_ignored_and_publishes_nothing(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    payload = json.dumps({"action": "created", "starred_at": "2024-01-01T00:00:00Z"}).encode()
    before = await _last_seq(engine)
    answer = await client.post("/api/inbound/github", content=payload, headers=_delivery("star", payload))
    assert answer.status_code == 200, answer.text
    assert answer.json()["detail"] == "ignored: external.github.star is not in the catalog"
    assert answer.json().get("event_id") is None
    assert await _last_seq(engine) == before


async def test_an_echo_of_a_mirrors_write_is_marked_as_its_subscriptions_consequence(
    client: httpx.AsyncClient, engine: Engine, receiver: Receiver, unique: str
) -> None:
    """Loop prevention: the GitHub subscription that wrote the comment never receives the echo of it."""
    sub = await engine.service.create(
        SubscriptionCreate(
            name=f"mirror-{unique}",
            url=receiver.url,
            event_types=["comment.created"],
            integration="github",
            integration_config={"repository": f"octo/r-{unique}", "token": "ghp_test", "api_url": receiver.url},
        )
    )

    async def published(comment_body: str) -> Event:
        payload = json.dumps(
            {
                "action": "created",
                "issue": {"number": 3, "title": "Mirrored", "body": "x"},
                "comment": {"id": 9, "body": comment_body},
                "repository": {"full_name": f"Octo/R-{unique}"},
                "sender": {"login": "turbo-bot", "type": "User"},
            }
        ).encode()
        answer = await client.post("/api/inbound/github", content=payload, headers=_delivery("issue_comment", payload))
        assert answer.status_code == 202, answer.text
        msg = await engine.js.get_last_msg(engine.settings.stream_name, answer.json()["subject"])
        return decode_event(msg.data or b"")

    echo = await published("Done.\n\n" + turbo_marker("issue-1"))
    assert echo.data.current["echo"] is True
    assert echo.chain == CausationChain(depth=1, subscription_id=sub.id)
    person = await published("A person's comment")
    assert person.data.current["echo"] is False and person.chain is None
