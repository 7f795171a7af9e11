"""The security checks and views of subscriptions: signature options, receivers' TLS, safe names, audit details."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from integrations.core import ClientTls, key_id, public_key_of, tls_problem
from streams import EventValidationError

from .._messages import SignatureScheme, Subscription

__all__ = (
    "CaBundle",
    "ClientCert",
    "ClientKey",
    "SignatureOption",
    "check_tls",
    "described",
    "key_fields",
    "patched_tls",
    "unsafe_character",
    "update_action",
)

SignatureOption = Annotated[
    SignatureScheme,
    Meta(description="`v1`: HMAC-SHA256 with the secret; `v1a`: ed25519, verified with `public_key`; `both`."),
]
_Pem = Annotated[str, Meta(max_length=65536)]
ClientCert = Annotated[_Pem, Meta(description="PEM client certificate (and chain) for mutual TLS.")]
ClientKey = Annotated[_Pem, Meta(description="PEM private key of `tls_client_cert` (unencrypted); never shown.")]
CaBundle = Annotated[_Pem, Meta(description="PEM CAs to verify the receiver with, instead of the system's.")]


def key_fields(sub: Subscription, *, moment: datetime) -> dict[str, Any]:
    """The view's public signing keys and TLS options (the client key only as "set")."""
    asymmetric = sub.signature_scheme != "v1" and bool(sub.signing_key)
    public = public_key_of(sub.signing_key) if asymmetric and sub.signing_key else None
    in_grace = sub.previous_secret_expires_at is not None and sub.previous_secret_expires_at > moment
    previous = sub.previous_signing_key if asymmetric and in_grace else None
    return {
        "signature": sub.signature_scheme,
        "public_key": public,
        "public_key_id": key_id(public) if public else None,
        "previous_public_key": public_key_of(previous) if previous else None,
        "tls_client_cert": sub.tls_client_cert,
        "tls_client_key_set": bool(sub.tls_client_key),
        "tls_ca_bundle": sub.tls_ca_bundle,
    }


def unsafe_character(text: str) -> str | None:
    """A character of ``text`` that would rewrite a terminal or a page (a control, a bidi override), named."""
    for index, char in enumerate(text):
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"contains the control character U+{code:04X} at {index}"
        if 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069 or code in (0x200E, 0x200F, 0x061C):
            return f"contains the bidirectional control U+{code:04X} at {index} (it reorders text when shown)"
    return None


def check_tls(tls: ClientTls, url: str) -> None:
    if not tls:
        return
    if not url.lower().startswith("https://"):
        raise EventValidationError("tls_client_cert" if tls.client_cert else "tls_ca_bundle", "needs an https URL")
    if (problem := tls_problem(tls)) is not None:
        raise EventValidationError(*problem)


def described(sub: Subscription) -> dict[str, Any]:
    """What an audit entry says of a subscription: no secret, and the URL's host only (a path can hold a token)."""
    host = urlsplit(sub.url).hostname if "://" in sub.url else None
    return {
        "integration": sub.integration,
        "host": host,
        "event_types": list(sub.event_types),
        "status": sub.status,
        "signature": sub.signature_scheme,
        "mtls": bool(sub.tls_client_cert),
    }


def update_action(changes: Mapping[str, Any]) -> str:
    """``pause`` or ``resume`` when that is all an update did, else ``update``."""
    status_only = set(changes) <= {
        "status",
        "disabled_reason",
        "consecutive_failures",
        "first_failure_at",
        # A resume also restarts a disabled subscription's probe state (self-healing).
        "probe_attempts",
        "next_probe_at",
    }
    if status_only and changes.get("status") == "paused":
        return "pause"
    if status_only and changes.get("status") == "active":
        return "resume"
    return "update"


_TLS_FIELDS = ("tls_client_cert", "tls_client_key", "tls_ca_bundle")


def patched_tls(current: Subscription, patch: Any, url: str | None) -> dict[str, str | None]:
    """The TLS fields a patch changes, checked together with those it keeps (and a new ``url``)."""
    given = {name: getattr(patch, name) for name in _TLS_FIELDS if getattr(patch, name) is not msgspec.UNSET}
    if not given and url is None:
        return {}
    merged = {name: given.get(name, getattr(current, name)) for name in _TLS_FIELDS}
    check_tls(
        ClientTls(
            client_cert=merged["tls_client_cert"],
            client_key=merged["tls_client_key"],
            ca_bundle=merged["tls_ca_bundle"],
        ),
        url or current.url,
    )
    return given
