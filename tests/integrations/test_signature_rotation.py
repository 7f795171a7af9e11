"""Rotation grace for every signature header, and one error a receiver catches."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest

from consumers import SignatureError, build_headers, generate_secret, verify


def _headers(secrets: list[str], body: bytes) -> dict[str, str]:
    return build_headers(
        msg_id="msg_1",
        timestamp=int(time.time()),
        body=body,
        secrets=secrets,
        event_type="issue.created",
        event_id="e-1",
        event_time=datetime.now(UTC),
        source="test",
        user_agent="turbohooks/test",
    )


def _github_style_receiver(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver written for GitHub's X-Hub-Signature-256 does with our header: one value, one secret."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Turbo-Signature-256"])


def test_a_github_style_receiver_keeps_verifying_through_the_grace_period() -> None:
    old, new, body = generate_secret(), generate_secret(), b'{"a": 1}'
    before = _headers([old], body)
    assert _github_style_receiver(old, before, body)
    assert "X-Turbo-Signature-256-Next" not in before

    during = _headers([new, old], body)  # the worker's order: current first, then the one in its grace period
    assert _github_style_receiver(old, during, body), "not broken the moment the secret is rotated"
    assert during["X-Turbo-Signature-256-Next"] == "sha256=" + hmac.new(new.encode(), body, "sha256").hexdigest()
    verify([new], during, body)  # Standard Webhooks: either secret verifies
    verify([old], during, body)

    after = _headers([new], body)
    assert _github_style_receiver(new, after, body)
    assert "X-Turbo-Signature-256-Next" not in after


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_not base64!"])
def test_verify_with_a_malformed_secret_raises_signature_error(bad: str) -> None:
    body = b"{}"
    headers = _headers([generate_secret()], body)
    with pytest.raises(SignatureError, match="secret"):
        verify(bad, headers, body)
