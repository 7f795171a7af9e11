"""Asymmetric webhook signatures: Standard Webhooks ``v1a`` (ed25519).

A ``v1a`` signature is ``v1a,`` + base64 of the ed25519 signature of the same
content the ``v1`` HMAC signs, ``"{id}.{timestamp}.{body}"``. The receiver
needs only the public key: it cannot sign, so a leaked receiver configuration
cannot forge deliveries (which a shared HMAC secret can).

Keys are written the Standard Webhooks way: the signing key ``whsk_`` +
base64 of the 32-byte ed25519 seed (a secret, stored like the HMAC secret),
the public key ``whpk_`` + base64 of its 32 bytes. :func:`public_jwk` is
the key as a JSON Web Key (RFC 8037: ``kty`` OKP, ``crv`` Ed25519, ``x``),
its ``kid`` the RFC 7638 thumbprint, as ``/.well-known/turbohooks/keys`` lists them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streams._errors import EventValidationError

__all__ = (
    "PUBLIC_KEY_PREFIX",
    "SIGNING_KEY_PREFIX",
    "generate_signing_key",
    "key_id",
    "public_jwk",
    "public_key_of",
    "sign_v1a",
    "verify_v1a",
)

SIGNING_KEY_PREFIX: Final = "whsk_"
PUBLIC_KEY_PREFIX: Final = "whpk_"
_KEY_BYTES: Final = 32


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str, prefix: str, field: str) -> bytes:
    value = text.strip()
    if value.startswith(prefix):
        value = value[len(prefix) :]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EventValidationError(field, f"is not valid base64 after the {prefix} prefix") from None
    if len(raw) != _KEY_BYTES:
        raise EventValidationError(field, f"must decode to {_KEY_BYTES} bytes (an ed25519 key), got {len(raw)}")
    return raw


def generate_signing_key() -> str:
    """A new ed25519 signing key: ``whsk_`` + base64 of its 32-byte seed."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return SIGNING_KEY_PREFIX + base64.b64encode(seed).decode("ascii")


@functools.lru_cache(maxsize=4096)
def _private(signing_key: str) -> Ed25519PrivateKey:
    # Cached like the HMAC key: every delivery signs with its subscription's key.
    return Ed25519PrivateKey.from_private_bytes(_decode(signing_key, SIGNING_KEY_PREFIX, "signing_key"))


@functools.lru_cache(maxsize=4096)
def public_key_of(signing_key: str) -> str:
    """The ``whpk_`` public key of a ``whsk_`` signing key."""
    raw = _private(signing_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign_v1a(signing_key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``v1a,<base64>`` (ed25519) signature of one message."""
    signature = _private(signing_key).sign(_content(msg_id, timestamp, body))
    return "v1a," + base64.b64encode(signature).decode("ascii")


def verify_v1a(public_key: str, msg_id: str, timestamp: int, body: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` (the part after ``v1a,``) is the key's signature of the message."""
    key = Ed25519PublicKey.from_public_bytes(_decode(public_key, PUBLIC_KEY_PREFIX, "public_key"))
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), _content(msg_id, timestamp, body))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def key_id(public_key: str) -> str:
    """The key's ``kid``: its RFC 7638 JWK thumbprint (base64url SHA-256 of ``{"crv","kty","x"}``)."""
    x = _b64url(_decode(public_key, PUBLIC_KEY_PREFIX, "public_key"))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(public_key: str) -> dict[str, str]:
    """The public key as a JSON Web Key (RFC 8037), with its ``kid``."""
    x = _b64url(_decode(public_key, PUBLIC_KEY_PREFIX, "public_key"))
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key_id(public_key), "alg": "EdDSA", "use": "sig"}
