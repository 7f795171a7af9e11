"""POST /api/inbound/github: verified with X-Hub-Signature-256, published as turbo.external.github.<event>."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import httpx
import pytest

from consumers import Engine
from streams import decode_event

SECRET = "gh-hook-secret"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", SECRET)


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
