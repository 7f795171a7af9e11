"""Standard Webhooks signing and verification, GitHub-style and CloudEvents headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from integrations.core._signing import (
    RESERVED_HEADERS,
    SignatureError,
    build_headers,
    generate_secret,
    github_signature,
    secret_bytes,
    sign,
    signature_header,
    verify,
)
from streams import EventValidationError

# The example published with the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _spec_headers(signature: str = SPEC_SIGNATURE) -> dict[str, str]:
    return {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": signature}


def test_known_answer_from_the_spec() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_generated_secret_is_whsec_with_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(secret_bytes(secret)) == 32
    assert generate_secret() != secret


def test_secret_prefix_is_optional() -> None:
    assert secret_bytes(SPEC_SECRET.removeprefix("whsec_")) == secret_bytes(SPEC_SECRET)


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_not base64!", "whsec_abc"])
def test_malformed_secret_names_the_field(bad: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        secret_bytes(bad)
    assert caught.value.field == "secret"


def test_verify_accepts_the_spec_example() -> None:
    verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TS + 10)


def test_verify_matches_header_names_case_insensitively() -> None:
    headers = {name.title(): value for name, value in _spec_headers().items()}
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS)


def test_verify_refuses_a_wrong_secret() -> None:
    with pytest.raises(SignatureError, match="no signature"):
        verify(generate_secret(), _spec_headers(), SPEC_BODY, now=SPEC_TS)


def test_verify_refuses_a_changed_body() -> None:
    with pytest.raises(SignatureError, match="no signature"):
        verify(SPEC_SECRET, _spec_headers(), b'{"test": 2432232315}', now=SPEC_TS)


def test_verify_refuses_a_changed_id() -> None:
    headers = _spec_headers() | {"webhook-id": "msg_other"}
    with pytest.raises(SignatureError, match="no signature"):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS)


@pytest.mark.parametrize("offset", [-301, 301, 3600])
def test_verify_refuses_a_timestamp_outside_tolerance(offset: int) -> None:
    with pytest.raises(SignatureError, match="outside"):
        verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TS + offset)


def test_verify_tolerance_is_configurable() -> None:
    verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TS + 3000, tolerance=3600)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_refuses_missing_headers(missing: str) -> None:
    headers = _spec_headers()
    del headers[missing]
    with pytest.raises(SignatureError, match=missing):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS)


def test_verify_refuses_a_non_numeric_timestamp() -> None:
    with pytest.raises(SignatureError, match="whole number"):
        verify(SPEC_SECRET, _spec_headers() | {"webhook-timestamp": "soon"}, SPEC_BODY, now=SPEC_TS)


def test_verify_ignores_other_signature_versions() -> None:
    with pytest.raises(SignatureError, match="no v1"):
        verify(SPEC_SECRET, _spec_headers(SPEC_SIGNATURE.replace("v1,", "v1a,")), SPEC_BODY, now=SPEC_TS)
    verify(SPEC_SECRET, _spec_headers(f"v1a,abc {SPEC_SIGNATURE}"), SPEC_BODY, now=SPEC_TS)


def test_verify_uses_the_clock_by_default() -> None:
    with pytest.raises(SignatureError, match="outside"):
        verify(SPEC_SECRET, _spec_headers(), SPEC_BODY)  # 2021 is long past


def test_rotation_header_verifies_with_either_secret() -> None:
    new, old = generate_secret(), SPEC_SECRET
    header = signature_header([new, old], SPEC_ID, SPEC_TS, SPEC_BODY)
    first, second = header.split(" ")
    assert first == sign(new, SPEC_ID, SPEC_TS, SPEC_BODY)
    assert second == SPEC_SIGNATURE
    for secret in (new, old):
        verify(secret, _spec_headers(header), SPEC_BODY, now=SPEC_TS)
    verify([generate_secret(), old], _spec_headers(header), SPEC_BODY, now=SPEC_TS)
    with pytest.raises(SignatureError):
        verify(generate_secret(), _spec_headers(header), SPEC_BODY, now=SPEC_TS)


def test_signature_header_needs_a_sequence_of_secrets() -> None:
    with pytest.raises(ValueError, match="at least one"):
        signature_header([], SPEC_ID, SPEC_TS, SPEC_BODY)
    with pytest.raises(TypeError):
        signature_header(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY)


def test_github_signature_is_keyed_by_the_secret_string() -> None:
    expected = hmac.new(SPEC_SECRET.encode(), SPEC_BODY, hashlib.sha256).hexdigest()
    assert github_signature(SPEC_SECRET, SPEC_BODY) == f"sha256={expected}"


def _headers(**overrides: object) -> dict[str, str]:
    arguments: dict[str, object] = {
        "msg_id": uuid.UUID("00000000-0000-0000-0000-000000000001"),
        "timestamp": SPEC_TS,
        "body": SPEC_BODY,
        "secrets": [SPEC_SECRET],
        "event_type": "issue.created",
        "event_id": uuid.UUID("00000000-0000-0000-0000-000000000002"),
        "event_time": datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC),
        "source": "https://turbo.example/api",
        "user_agent": "turbohooks/0.1",
        "extra": None,
    }
    arguments.update(overrides)
    return build_headers(**arguments)  # type: ignore[arg-type]


def test_build_headers() -> None:
    headers = _headers()
    msg_id = "00000000-0000-0000-0000-000000000001"
    assert headers == {
        "webhook-id": msg_id,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": sign(SPEC_SECRET, msg_id, SPEC_TS, SPEC_BODY),
        "X-Turbo-Event": "issue.created",
        "X-Turbo-Signature-256": github_signature(SPEC_SECRET, SPEC_BODY),
        "User-Agent": "turbohooks/0.1",
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "00000000-0000-0000-0000-000000000002",
        "ce-type": "turbo.issue.created",
        "ce-source": "https://turbo.example/api",
        "ce-time": "2024-05-01T12:30:15.123000Z",
    }
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS)


def test_build_headers_signs_with_every_secret_and_github_with_the_previous_one_during_grace() -> None:
    # Issue 14: a GitHub-style receiver checks one value with the secret it was configured
    # with; X-Turbo-Signature-256 keeps the previous secret until the grace period ends.
    new = generate_secret()
    headers = _headers(secrets=[new, SPEC_SECRET])
    assert len(headers["webhook-signature"].split()) == 2
    assert headers["X-Turbo-Signature-256"] == github_signature(SPEC_SECRET, SPEC_BODY)
    assert headers["X-Turbo-Signature-256-Next"] == github_signature(new, SPEC_BODY)
    for secret in (new, SPEC_SECRET):
        verify(secret, headers, SPEC_BODY, now=SPEC_TS)


def test_build_headers_converts_ce_time_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    assert _headers(event_time=datetime(2024, 5, 1, 14, 0, tzinfo=paris))["ce-time"] == "2024-05-01T12:00:00Z"
    assert _headers(event_time=datetime(2024, 5, 1, 12, 0))["ce-time"] == "2024-05-01T12:00:00Z"


def test_extra_headers_cannot_override_reserved_ones() -> None:
    extra = {
        "X-Custom": "kept",
        "Webhook-Signature": "v1,forged",
        "webhook-id": "forged",
        "CE-TYPE": "forged",
        "content-type": "text/plain",
        "Host": "evil.example",
    }
    headers = _headers(extra=extra)
    assert headers["X-Custom"] == "kept"
    lowered = {name.lower(): value for name, value in headers.items()}
    assert len(lowered) == len(headers), "no header may appear twice under different cases"
    assert "forged" not in " ".join(headers.values())
    assert lowered["content-type"] == "application/json"
    assert "host" not in lowered
    assert {"webhook-signature", "ce-type", "x-turbo-signature-256"} <= RESERVED_HEADERS


def test_signature_is_plain_base64_of_hmac() -> None:
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{SPEC_ID}.{SPEC_TS}.".encode() + SPEC_BODY, hashlib.sha256).digest()
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == "v1," + base64.b64encode(digest).decode()
