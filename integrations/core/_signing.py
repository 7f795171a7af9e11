"""Webhook signing: Standard Webhooks, a GitHub-style header, CloudEvents binary mode.

Every delivery carries the `Standard Webhooks <https://www.standardwebhooks.com/>`_
headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``: the
signature is ``v1,`` + base64 HMAC-SHA256, keyed by the base64-decoded
``whsec_`` secret, of ``"{id}.{timestamp}.{body}"``. During a secret rotation
the header holds one signature per secret, space-separated, and a receiver
accepts the request if any matches.

For receivers written against GitHub's scheme, ``X-Turbo-Signature-256`` is
``sha256=`` + hex HMAC-SHA256 of the body alone, keyed by the *whole secret
string* (``whsec_...`` encoded as UTF-8), which is what such a receiver
configured with the same secret string computes. It has no timestamp, so it
does not protect against replays: prefer ``webhook-signature``. Such a receiver
checks one value against one secret, so during a rotation's grace period
``X-Turbo-Signature-256`` stays keyed by the *previous* secret (the one the
receiver was configured with, so it keeps verifying unchanged) and
``X-Turbo-Signature-256-Next`` carries the new secret's signature; when the
grace period ends the header switches to the new secret. A receiver moves to
the new secret by then, or accepts either header in the meantime.

:func:`verify` is the receiver's side, for tests, the bundled receivers and docs.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
import secrets as _secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from streams._errors import EventValidationError, TurbohooksError

from ._asymmetric import sign_v1a, verify_v1a

__all__ = (
    "CE_TYPE_PREFIX",
    "RESERVED_HEADERS",
    "SECRET_PREFIX",
    "SignatureError",
    "build_headers",
    "generate_secret",
    "github_signature",
    "header_problem",
    "secret_bytes",
    "sign",
    "signature_header",
    "verify",
)

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 — a prefix, not a secret
CE_TYPE_PREFIX: Final = "turbo."
"""``ce-type`` is ``turbo.<event_type>``: the event's NATS subject, reverse-DNS-like as CloudEvents asks."""

RESERVED_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-turbo-event",
        "x-turbo-signature-256",
        "x-turbo-signature-256-next",
        "user-agent",
        "content-type",
        "ce-specversion",
        "ce-id",
        "ce-type",
        "ce-source",
        "ce-time",
        # framing headers set by the HTTP client: a custom value would corrupt the request
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
"""Lower-cased header names a subscription's custom headers may not set."""

# RFC 9110 section 5.1: field-name = token = 1*tchar.
_FIELD_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Section 5.5: field-value = *field-content, of VCHAR, SP, HTAB and obs-text (a str's non-ASCII characters,
# sent as UTF-8 octets, are obs-text); controls are not: C0 but HTAB, DEL, and C1 (U+0080-U+009F).
_FORBIDDEN_IN_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def header_problem(name: str, value: object) -> str | None:
    """What is wrong with a header field by RFC 9110's rules (``None``: nothing), naming the character.

    The name is a token; the value is a string of visible characters, spaces and
    tabs, neither beginning nor ending with a space or tab. HTTP clients refuse
    control characters at send time (aiohttp raises), so they are refused here first.
    """
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        return "is not a valid HTTP header name (RFC 9110: letters, digits and !#$%&'*+-.^_`|~ only)"
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    bad = _FORBIDDEN_IN_VALUE.search(value)
    if bad is not None:
        return f"contains the control character U+{ord(bad.group()):04X} at {bad.start()} (RFC 9110 field-value)"
    if value != value.strip(" \t"):
        return "must not begin or end with a space or tab (RFC 9110 field-value)"
    return None


class SignatureError(TurbohooksError, ValueError):
    """A webhook request failed verification: missing headers, stale timestamp, no matching signature,
    or a secret that is not a ``whsec_`` secret (a receiver catches this one error)."""


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


@functools.lru_cache(maxsize=4096)
def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the prefix is optional); :class:`EventValidationError` if malformed."""
    # Cached: every delivery signs with its subscription's key, and decoding it
    # each time showed in the worker's profile. Errors are not cached.
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    if not text:
        raise EventValidationError("secret", "is empty; expected whsec_ followed by base64")
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EventValidationError("secret", "is not valid base64 after the whsec_ prefix") from None
    if not key:
        raise EventValidationError("secret", "decodes to no bytes")
    return key


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def _sign_with_key(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, without building an HMAC object.
    digest = hmac.digest(key, _signed_content(msg_id, timestamp, body), "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``v1,<base64>`` signature of one message."""
    return _sign_with_key(secret_bytes(secret), msg_id, timestamp, body)


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret (current first), space-separated."""
    if isinstance(secrets, str):
        raise TypeError("signature_header() takes a sequence of secrets, not one string")
    if not secrets:
        raise ValueError("signature_header() needs at least one secret")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def github_signature(secret: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``body``, keyed by the whole secret string (UTF-8), GitHub style."""
    return "sha256=" + hmac.digest(secret.encode(), body, "sha256").hex()


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_headers(
    *,
    msg_id: str | uuid.UUID,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str],
    event_type: str,
    event_id: str | uuid.UUID,
    event_time: datetime,
    source: str,
    user_agent: str,
    extra: Mapping[str, str] | None = None,
    signing_keys: Sequence[str] = (),
    content_type: str = "application/json",
) -> dict[str, str]:
    """Every header of one delivery; a custom (``extra``) header never replaces a reserved one.

    ``content_type`` is the body's (a payload template may declare another than JSON).

    ``secrets`` is the current secret first, then a rotated-out one still in its
    grace period; ``signing_keys`` the same for ``v1a`` (ed25519) signatures. Either
    may be empty (not both): a ``v1a``-only delivery has no HMAC signature at all,
    ``X-Turbo-Signature-256`` included. ``event_time`` without a time zone is taken as UTC.
    """
    if isinstance(secrets, str) or isinstance(signing_keys, str):
        raise TypeError("build_headers(secrets=..., signing_keys=...) take sequences, not one string")
    if not secrets and not signing_keys:
        raise ValueError("build_headers() needs at least one secret or signing key")
    ident = str(msg_id)
    headers = {name: value for name, value in (extra or {}).items() if name.lower() not in RESERVED_HEADERS}
    signatures = [sign(secret, ident, timestamp, body) for secret in secrets]
    signatures += [sign_v1a(key, ident, timestamp, body) for key in signing_keys]
    if secrets:
        # One value per header, as GitHub-style receivers compare: the secret they were
        # configured with (the previous one) until the grace period ends.
        headers["X-Turbo-Signature-256"] = github_signature(secrets[-1], body)
    headers.update(
        {
            "webhook-id": ident,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures),
            "X-Turbo-Event": event_type,
            "User-Agent": user_agent,
            "Content-Type": content_type,
            "ce-specversion": "1.0",
            "ce-id": str(event_id),
            "ce-type": CE_TYPE_PREFIX + event_type,
            "ce-source": source,
            "ce-time": _rfc3339(event_time),
        }
    )
    if len(secrets) > 1:
        headers["X-Turbo-Signature-256-Next"] = github_signature(secrets[0], body)
    return headers


def verify(
    secret_or_secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
    public_keys: Sequence[str] = (),
) -> None:
    """Check a received webhook's Standard Webhooks signature; raise :class:`SignatureError` if it fails.

    Header names are matched case-insensitively. The timestamp must be within
    ``tolerance`` seconds of ``now`` (default: the clock) in either direction.
    With ``public_keys`` (``whpk_...``), ``v1a`` (ed25519) signatures are checked
    too; ``secret_or_secrets`` may then be empty (``()``) to accept ``v1a`` alone.
    """
    secrets = [secret_or_secrets] if isinstance(secret_or_secrets, str) else list(secret_or_secrets)
    if not secrets and not public_keys:
        raise ValueError("verify() needs at least one secret or public key")
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [n for n in ("webhook-id", "webhook-timestamp", "webhook-signature") if not lowered.get(n)]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    msg_id = lowered["webhook-id"]
    try:
        timestamp = int(lowered["webhook-timestamp"].strip())
    except ValueError:
        raise SignatureError("webhook-timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"webhook-timestamp is {current - timestamp:+.0f}s from now, outside ±{tolerance:g}s")
    candidates = lowered["webhook-signature"].split()
    received = [c.split(",", 1)[1].encode() for c in candidates if c.startswith("v1,")]
    asymmetric = [c.split(",", 1)[1] for c in candidates if c.startswith("v1a,")]
    if public_keys and any(verify_v1a(key, msg_id, timestamp, body, sig) for key in public_keys for sig in asymmetric):
        return
    if not received or not secrets:
        raise SignatureError(f"webhook-signature holds no {'v1' if secrets else 'matching v1a'} signature")
    matched = False
    for secret in secrets:
        try:
            key = secret_bytes(secret)
        except EventValidationError as exc:  # the receiver's own configuration: still one error to catch
            raise SignatureError(f"the secret given to verify() {exc.problem}") from None
        expected = _sign_with_key(key, msg_id, timestamp, body).split(",", 1)[1].encode()
        for candidate in received:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no signature in webhook-signature matches")
