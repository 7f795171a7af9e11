"""Who calls the API, for the audit log: the admin token's hash prefix and the client's address.

An ASGI middleware around every request: when it carries a bearer token, the
actions it performs are recorded as ``token:<12 hex of its SHA-256>`` from the
client's address (a token the guard refuses performs none). The token is hashed
here and never stored. The UI (its own sessions) sets its actor with
:func:`~consumers.acting_as` in the same way.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from consumers import acting_as

from ..operations import token_actor

__all__ = ("audit_actor_middleware",)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def audit_actor_middleware(app: ASGIApp) -> ASGIApp:
    """Run each HTTP request as its token's actor (see :func:`~gateway.operations.record_audit`)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer(scope) if scope["type"] == ScopeType.HTTP else None
        if token is None:
            await app(scope, receive, send)
            return
        client = scope.get("client")
        with acting_as(token_actor(token), client[0] if client else None):
            await app(scope, receive, send)

    return middleware
