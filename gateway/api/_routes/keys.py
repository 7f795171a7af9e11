"""``GET /.well-known/turbohooks/keys``: the public keys ``v1a`` signatures verify with (public, like a JWKS).

Each subscription signing with ed25519 (``signature`` ``v1a`` or ``both``) has a
key here, and during a rotation's grace period its previous key too; a key's
``kid`` is its RFC 7638 thumbprint, shown as ``public_key_id`` in the
subscription's answer. Public keys are not secrets: the document needs no token.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from litestar import Response, Router, get

from integrations.core import public_jwk, public_key_of

from .._params import EngineDep
from .._problems import responses

__all__ = ("router",)


class PublicKey(msgspec.Struct, kw_only=True):
    """An ed25519 public key as a JSON Web Key (RFC 8037)."""

    kty: str
    crv: str
    x: str
    """The 32-byte public key, base64url without padding."""
    kid: str
    alg: str
    use: str


class KeySet(msgspec.Struct, kw_only=True):
    """The JWKS-like document of every key turbohooks signs ``v1a`` with."""

    keys: list[PublicKey]


@get(
    "/keys",
    summary="Public keys of v1a (ed25519) signatures, as a JWKS (no token needed)",
    # Public: no 401 (responses() adds it to every protected route).
    responses={status: spec for status, spec in responses(503).items() if status != 401},
)
async def signing_keys(engine: EngineDep) -> Response[KeySet]:
    now = datetime.now(UTC)
    keys: dict[str, PublicKey] = {}
    for sub in await engine.subscriptions.all_for_mirror():
        if sub.signature_scheme == "v1" or not sub.signing_key:
            continue
        signing = [sub.signing_key]
        if sub.previous_signing_key and sub.previous_secret_expires_at and sub.previous_secret_expires_at > now:
            signing.append(sub.previous_signing_key)
        for key in signing:
            jwk = PublicKey(**public_jwk(public_key_of(key)))
            keys.setdefault(jwk.kid, jwk)
    return Response(KeySet(keys=list(keys.values())), headers={"Cache-Control": "public, max-age=60"})


router = Router(path="/.well-known/turbohooks", tags=["health"], route_handlers=[signing_keys])
"""Public: no guard, no security requirement."""
