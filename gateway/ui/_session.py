"""The UI's session: a signed cookie issued for the admin token, its guards, and CSRF scoped to the UI.

The cookie holds no token: ``<issued>.<nonce>.<signature>``, signed with a key
derived from the admin token (so changing the token signs everyone out). It is
HttpOnly, SameSite=Strict, and Secure when the page is served over https.
Signing out revokes its nonce in this process (and clears the cookie); a session
lasts :data:`SESSION_MAX_AGE` at most.

CSRF protection is Litestar's ``CSRFMiddleware``, mounted on the UI's router
only: the ``/api`` routes keep taking the bearer token from scripts and are not
touched. Its cookie is HttpOnly too; pages carry the token in their forms and
in htmx's request headers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Final

from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Guard, Receive, Scope, Send

from ..api._guard import TOKEN_STATE, require_admin_token

__all__ = (
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SESSION_MAX_AGE",
    "SESSION_OR_TOKEN_GUARDS",
    "UI_SESSION_GUARDS",
    "CsrfMiddleware",
    "SignInRequired",
    "has_session",
    "issue_session",
    "revoke_session",
    "session_cookie",
    "token_matches",
)

SESSION_COOKIE: Final = "turbohooks_session"
CSRF_COOKIE: Final = "turbohooks_csrf"
CSRF_HEADER: Final = "x-csrftoken"
SESSION_MAX_AGE: Final = 12 * 3600
"""Seconds a session lasts; then the UI asks for the token again."""
PUBLIC_OPT: Final = "ui_public"
"""A UI route with ``opt={PUBLIC_OPT: True}`` wants no session (the sign-in page, the static files)."""
_REVOKED_STATE: Final = "ui_revoked_sessions"


class SignInRequired(NotAuthorizedException):
    """A UI page asked for without a valid session: the UI answers with the sign-in page."""


def _key(state: State, purpose: bytes) -> bytes:
    token: bytes = state[TOKEN_STATE]
    return hmac.new(token, b"turbohooks-ui:" + purpose, hashlib.sha256).digest()


def _sign(state: State, payload: str) -> str:
    return hmac.new(_key(state, b"session"), payload.encode(), hashlib.sha256).hexdigest()


def token_matches(state: State, given: str) -> bool:
    """``given`` is the app's admin token (compared in constant time)."""
    expected: bytes = state[TOKEN_STATE]
    return hmac.compare_digest(given.strip().encode(), expected)


def issue_session(state: State, now: float | None = None) -> str:
    """A new session cookie value."""
    issued = int(now if now is not None else time.time())
    payload = f"{issued}.{secrets.token_hex(16)}"
    return f"{payload}.{_sign(state, payload)}"


def _revoked(state: State) -> dict[str, float]:
    revoked: dict[str, float] | None = state.get(_REVOKED_STATE)
    if revoked is None:
        revoked = {}
        state[_REVOKED_STATE] = revoked
    return revoked


def _nonce_of(state: State, value: str, now: float) -> str | None:
    """The nonce of a valid, unexpired, unrevoked session value; else ``None``."""
    issued, _, rest = value.partition(".")
    nonce, _, signature = rest.partition(".")
    if not issued.isdigit() or not nonce or not signature:
        return None
    if not hmac.compare_digest(signature, _sign(state, f"{issued}.{nonce}")):
        return None
    if not 0 <= now - int(issued) <= SESSION_MAX_AGE or nonce in _revoked(state):
        return None
    return nonce


def has_session(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """The request carries a valid session cookie."""
    value = connection.cookies.get(SESSION_COOKIE)
    return bool(value) and _nonce_of(connection.app.state, value or "", time.time()) is not None


def revoke_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Refuse the request's session from now on, in this process (signing out)."""
    now = time.time()
    state = connection.app.state
    nonce = _nonce_of(state, connection.cookies.get(SESSION_COOKIE, ""), now)
    revoked = _revoked(state)
    for old, at in list(revoked.items()):  # forget the ones that expired anyway
        if now - at > SESSION_MAX_AGE:
            del revoked[old]
    if nonce is not None:
        revoked[nonce] = now


def _is_https(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return connection.scope.get("scheme") == "https"


def session_cookie(connection: ASGIConnection[Any, Any, Any, Any], value: str | None) -> Cookie:
    """The session cookie to set (``value``), or to clear (``None``)."""
    return Cookie(
        key=SESSION_COOKIE,
        value=value or "",
        max_age=SESSION_MAX_AGE if value else 0,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_is_https(connection),
    )


def require_session(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The UI's guard: a page wants a session, except those marked public."""
    if handler.opt.get(PUBLIC_OPT) or has_session(connection):
        return
    raise SignInRequired(detail="sign in with the admin token")


def require_token_or_session(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The OpenAPI pages' guard: the bearer token (scripts) or a signed-in UI session (a browser)."""
    if not has_session(connection):
        require_admin_token(connection, handler)


UI_SESSION_GUARDS: Final[list[Guard]] = [require_session]
SESSION_OR_TOKEN_GUARDS: Final[list[Guard]] = [require_token_or_session]


class CsrfMiddleware:
    """Litestar's CSRF middleware, its cookie Secure when the request came over https.

    The secret is derived from the admin token; both instances share it, so a
    token issued over one scheme is valid over the other.
    """

    def __init__(self, app: ASGIApp, admin_token: str) -> None:
        secret = hmac.new(admin_token.encode(), b"turbohooks-ui:csrf", hashlib.sha256).hexdigest()

        def config(secure: bool) -> CSRFConfig:
            return CSRFConfig(
                secret=secret,
                cookie_name=CSRF_COOKIE,
                header_name=CSRF_HEADER,
                cookie_httponly=True,
                cookie_samesite="strict",
                cookie_secure=secure,
            )

        self._plain = CSRFMiddleware(app, config(secure=False))
        self._secure = CSRFMiddleware(app, config(secure=True))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self._secure if scope.get("scheme") == "https" else self._plain
        await chosen(scope, receive, send)
