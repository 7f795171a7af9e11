"""The admin token's guard, set once on every router that wants the token.

Which routes are public is said by where they are registered: the routers of
``/health`` and the inbound webhooks carry no guard, every other router (and
the OpenAPI schema's) carries :data:`ADMIN_GUARDS`. The token itself is the
app's (``app.state``), so one router serves any number of apps.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.types import Guard

from .._token import ADMIN_TOKEN_VARIABLE

__all__ = ("ADMIN_GUARDS", "ADMIN_SECURITY", "SECURITY_SCHEME", "TOKEN_STATE", "require_admin_token")

SECURITY_SCHEME: Final = "adminToken"
TOKEN_STATE: Final = "admin_token"  # noqa: S105 — a key of app.state, not a secret
"""The key of ``app.state`` holding the expected token (bytes)."""


def require_admin_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Refuse a request without ``Authorization: Bearer <the app's admin token>``."""
    expected: bytes = connection.app.state[TOKEN_STATE]
    scheme, _sep, value = connection.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected):
        raise NotAuthorizedException(
            detail=f"send the admin token as 'Authorization: Bearer <token>' (see {ADMIN_TOKEN_VARIABLE})",
            headers={"WWW-Authenticate": 'Bearer realm="turbohooks"'},
        )


ADMIN_GUARDS: Final[list[Guard]] = [require_admin_token]
"""The guards of a router whose routes want the admin token."""
ADMIN_SECURITY: Final[list[dict[str, list[str]]]] = [{SECURITY_SCHEME: []}]
"""Its OpenAPI security requirement."""
