"""Issue 17 through the API: v1a signatures and their public keys, the audit log, safe names.

Signatures are checked with ``cryptography``'s Ed25519PublicKey directly (not
turbohooks' verify), from the key in the subscription's answer and from the
public JWKS document.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar import Litestar
from litestar.testing import AsyncTestClient

from consumers import Engine
from streams import build_event
from tests.support import Receiver, Running, wait_for

from .conftest import TOKEN, new_subscription


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _v1a_verified_by(keys: list[Ed25519PublicKey], headers: dict[str, str], body: bytes) -> list[int]:
    """For each key, how many v1a signatures of the request it verifies (cryptography alone)."""
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    signatures = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1a,")]
    counts = []
    for key in keys:
        good = 0
        for signature in signatures:
            try:
                key.verify(base64.b64decode(signature), content)
                good += 1
            except InvalidSignature:
                pass
        counts.append(good)
    return counts


async def test_v1a_deliveries_verify_with_the_published_key_and_rotate_with_overlap(
    client: httpx.AsyncClient,
    anonymous: AsyncTestClient[Litestar],
    engine: Engine,
    running: Running,
    receiver: Receiver,
    unique: str,
) -> None:
    created = await client.post(
        "/api/subscriptions",
        json=new_subscription(f"{receiver.url}/v1a", f"v1a-{unique}", signature="v1a", retry_schedule=[]),
    )
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["signature"] == "v1a" and view["public_key"].startswith("whpk_")
    assert "signing_key" not in view and "whsk_" not in created.text, "the private key is never shown"
    sid = view["id"]
    shown = await client.get(f"/api/subscriptions/{sid}")
    assert shown.json()["public_key"] == view["public_key"]

    # The public document, without a token: the same key, under the kid the answer names.
    jwks = (await anonymous.get("/.well-known/turbohooks/keys")).json()
    published = {k["kid"]: k for k in jwks["keys"]}
    jwk = published[view["public_key_id"]]
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    assert _b64url(jwk["x"]) == base64.b64decode(view["public_key"][5:])
    first_key = Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"]))

    await wait_for(lambda: uuid.UUID(sid) in running.worker.running, what="the worker to start it")
    event = build_event(event_type="issue.created", entity_id=f"e-{unique}", data={"current": {"title": "v1a"}})
    await engine.publisher.publish(event)
    await wait_for(lambda: len(receiver.at("/v1a")) >= 1, what="the first delivery")
    got = receiver.at("/v1a")[0]
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["webhook-signature"].startswith("v1a,") and "v1," not in headers["webhook-signature"]
    assert "x-turbo-signature-256" not in headers, "no HMAC at all for v1a"
    assert _v1a_verified_by([first_key], headers, got.body) == [1]

    rotated = (await client.post(f"/api/subscriptions/{sid}/rotate-secret")).json()
    assert rotated["public_key"] != view["public_key"] and rotated["previous_public_key"] == view["public_key"]
    second_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(rotated["public_key"][5:]))
    kids = {k["kid"] for k in (await anonymous.get("/.well-known/turbohooks/keys")).json()["keys"]}
    assert {view["public_key_id"], rotated["public_key_id"]} <= kids, "both keys published during the grace"

    # The worker sees the rotation through the KV mirror; the next delivery carries both signatures.
    async def both_sign() -> bool:
        sub = running.worker._known.get(uuid.UUID(sid))
        return sub is not None and sub.previous_signing_key is not None

    await wait_for(both_sign, what="the worker to see the rotation")
    later = build_event(event_type="issue.created", entity_id=f"f-{unique}", data={"current": {"title": "2"}})
    await engine.publisher.publish(later)
    await wait_for(lambda: len(receiver.at("/v1a")) >= 2, what="the second delivery")
    again = receiver.at("/v1a")[1]
    headers = {k.lower(): v for k, v in again.headers.items()}
    assert len(headers["webhook-signature"].split()) == 2
    assert _v1a_verified_by([second_key, first_key], headers, again.body) == [1, 1]


async def test_the_keys_document_is_public_and_lists_only_asymmetric_subscriptions(
    client: httpx.AsyncClient, anonymous: AsyncTestClient[Litestar], receiver: Receiver, unique: str
) -> None:
    hmac_only = (await client.post("/api/subscriptions", json=new_subscription(receiver.url, f"v1-{unique}"))).json()
    assert hmac_only["signature"] == "v1" and hmac_only["public_key"] is None
    both = (
        await client.post("/api/subscriptions", json=new_subscription(receiver.url, f"both-{unique}", signature="both"))
    ).json()
    answer = await anonymous.get("/.well-known/turbohooks/keys")
    assert answer.status_code == 200
    assert [k["kid"] for k in answer.json()["keys"]] == [both["public_key_id"]]
    # Switching a v1 subscription to v1a makes its key pair.
    switched = (await client.patch(f"/api/subscriptions/{hmac_only['id']}", json={"signature": "v1a"})).json()
    assert switched["public_key"].startswith("whpk_")
    assert len((await anonymous.get("/.well-known/turbohooks/keys")).json()["keys"]) == 2


async def test_every_admin_action_is_audited_with_who_and_from_where_and_no_secret(
    client: httpx.AsyncClient, engine: Engine, receiver: Receiver, unique: str
) -> None:
    body = new_subscription(f"{receiver.url}/path-with-token-abc", f"audit-{unique}", headers={"X-Key": "hunter2"})
    created = (await client.post("/api/subscriptions", json=body)).json()
    sid = created["id"]
    await client.patch(f"/api/subscriptions/{sid}", json={"headers": {"X-Key": "hunter3"}})
    await client.patch(f"/api/subscriptions/{sid}", json={"active": False})
    await client.patch(f"/api/subscriptions/{sid}", json={"active": True})
    rotated = (await client.post(f"/api/subscriptions/{sid}/rotate-secret")).json()
    await client.post(f"/api/subscriptions/{sid}/test")
    await client.delete(f"/api/subscriptions/{sid}")

    page = (await client.get("/api/audit", params={"target": f"subscription:{sid}"})).json()
    actions = [entry["action"] for entry in reversed(page["items"])]
    assert actions == ["create", "update", "pause", "resume", "rotate", "test", "delete"]
    assert page["total"] == 7
    actor = "token:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
    for entry in page["items"]:
        assert entry["actor"] == actor and entry["source_ip"] == "127.0.0.1"
        assert entry["at"] and entry["target"] == f"subscription:{sid}"
    text = str(page)
    for secret in (created["secret"], rotated["secret"], TOKEN, "hunter2", "hunter3", "path-with-token-abc"):
        assert secret not in text
    assert page["items"][-1]["details"]["host"] == "127.0.0.1"
    assert (await client.get("/api/audit", params={"action": "rotate"})).json()["total"] >= 1
    # The same log in SQL, for the CLI and the UI.
    assert [e.action for e in await engine.audit.list(target=f"subscription:{sid}", limit=2)] == ["delete", "test"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "name",
    ["evil\u202egnp.exe", "a\x1b[31mred", "tab\there", "isolate\u2066x\u2069", "c1\x9bcontrol"],
)
async def test_names_with_control_characters_or_bidi_overrides_are_refused(
    client: httpx.AsyncClient, receiver: Receiver, name: str
) -> None:
    answer = await client.post("/api/subscriptions", json=new_subscription(receiver.url, name))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["errors"][0]["field"] == "name"
    assert "U+" in problem["detail"]
