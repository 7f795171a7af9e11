"""Standard Webhooks ``v1a`` (ed25519) signatures, checked with ``cryptography`` directly (not our verify)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consumers import Subscription, delivery_headers
from integrations import get_integration
from integrations.core import (
    SignatureError,
    build_headers,
    generate_secret,
    generate_signing_key,
    key_id,
    public_jwk,
    public_key_of,
    verify,
)
from streams import EventValidationError, build_event, encode_event

BODY = b'{"hello": "world"}'
TS = 1_700_000_000


def _independent_check(public_key: str, headers: dict[str, str], body: bytes) -> int:
    """How many v1a signatures of the header verify under ``public_key``, by cryptography alone."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    good = 0
    for candidate in headers["webhook-signature"].split():
        version, _, value = candidate.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value), content)
        except InvalidSignature:
            continue
        good += 1
    return good


def _headers(*, secrets: list[str], keys: list[str], body: bytes = BODY) -> dict[str, str]:
    return build_headers(
        msg_id="msg_1",
        timestamp=TS,
        body=body,
        secrets=secrets,
        signing_keys=keys,
        event_type="issue.created",
        event_id=uuid.uuid4(),
        event_time=datetime.now(UTC),
        source="/turbo",
        user_agent="t/1",
    )


def test_keys_are_standard_webhooks_strings_and_a_jwk() -> None:
    key = generate_signing_key()
    assert key.startswith("whsk_") and len(base64.b64decode(key[5:])) == 32
    public = public_key_of(key)
    assert public.startswith("whpk_") and len(base64.b64decode(public[5:])) == 32
    jwk = public_jwk(public)
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["kid"] == key_id(public)
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    assert raw == base64.b64decode(public[5:])
    with pytest.raises(EventValidationError, match="32 bytes"):
        public_key_of("whsk_" + base64.b64encode(b"short").decode())


def test_v1a_alone_carries_no_hmac_and_verifies_independently() -> None:
    key = generate_signing_key()
    headers = _headers(secrets=[], keys=[key])
    assert headers["webhook-signature"].startswith("v1a,")
    assert " " not in headers["webhook-signature"]
    assert "X-Turbo-Signature-256" not in headers
    assert _independent_check(public_key_of(key), headers, BODY) == 1
    assert _independent_check(public_key_of(key), headers, BODY + b" ") == 0  # a changed body fails
    verify((), headers, BODY, now=TS, public_keys=[public_key_of(key)])
    with pytest.raises(SignatureError):
        verify((), headers, BODY, now=TS, public_keys=[public_key_of(generate_signing_key())])


def test_both_schemes_sign_with_hmac_and_ed25519() -> None:
    secret, key = generate_secret(), generate_signing_key()
    headers = _headers(secrets=[secret], keys=[key])
    versions = [s.split(",", 1)[0] for s in headers["webhook-signature"].split()]
    assert versions == ["v1", "v1a"]
    verify(secret, headers, BODY, now=TS)
    assert _independent_check(public_key_of(key), headers, BODY) == 1


def _subscription(**fields: object) -> Subscription:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "name": "s",
        "url": "https://example.com/hook",
        "event_types": ["*"],
        "secret": generate_secret(),
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    return Subscription(**values)  # type: ignore[arg-type]


def test_delivery_headers_follow_the_scheme_and_sign_with_both_keys_during_the_grace() -> None:
    event = build_event(event_type="issue.created", entity_id="i-1", data={"current": {"title": "x"}})
    raw = encode_event(event)
    webhook = get_integration("webhook")
    old, new = generate_signing_key(), generate_signing_key()
    rotated = _subscription(
        signature_scheme="v1a",
        signing_key=new,
        previous_signing_key=old,
        previous_secret=generate_secret(),
        previous_secret_expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    request = webhook.render(event, raw, rotated.url, {})
    assert request is not None
    headers = delivery_headers(rotated, webhook, event, request)
    assert [s[:4] for s in headers["webhook-signature"].split()] == ["v1a,", "v1a,"]
    for key in (new, old):
        assert _independent_check(public_key_of(key), headers, request.body) == 1
    expired = _subscription(
        signature_scheme="both",
        signing_key=new,
        previous_signing_key=old,
        previous_secret_expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    headers = delivery_headers(expired, webhook, event, request)
    assert [s[:3] for s in headers["webhook-signature"].split()] == ["v1,", "v1a"]
    assert _independent_check(public_key_of(old), headers, request.body) == 0
    assert _independent_check(public_key_of(new), headers, request.body) == 1
    plain = delivery_headers(_subscription(signing_key=new), webhook, event, request)
    assert "v1a," not in plain["webhook-signature"]  # the scheme v1 never signs with the key
