"""Signing in (the admin token for a session cookie) and out."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from litestar import Request, get, post
from litestar.response import Redirect, Template

from .._token import ADMIN_TOKEN_VARIABLE
from ._common import form_values, render
from ._session import PUBLIC_OPT, has_session, issue_session, revoke_session, session_cookie, token_matches

__all__ = ("HANDLERS", "safe_next", "sign_in_url")

_HOME: Final = "/settings/webhooks"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (no ``//host`` or scheme)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return _HOME
    return value


def sign_in_url(path: str) -> str:
    return f"/sign-in?next={quote(path, safe='/')}" if path and path != "/" else "/sign-in"


@get("/", name="ui-home", opt={PUBLIC_OPT: True})
async def home(request: Request[Any, Any, Any]) -> Redirect:
    return Redirect(_HOME if has_session(request) else "/sign-in", status_code=303)


@get("/sign-in", name="ui-sign-in", opt={PUBLIC_OPT: True})
async def sign_in_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    target = safe_next(request.query_params.get("next"))
    if has_session(request):
        return Redirect(target, status_code=303)
    return render("sign_in.html.j2", request, next=target, error=None, variable=ADMIN_TOKEN_VARIABLE)


@post("/sign-in", name="ui-sign-in-submit", opt={PUBLIC_OPT: True})
async def sign_in(request: Request[Any, Any, Any]) -> Template | Redirect:
    values = await form_values(request)
    target = safe_next(str(values.get("next") or ""))
    if not token_matches(request.app.state, str(values.get("token") or "")):
        return render(
            "sign_in.html.j2",
            request,
            next=target,
            error="That is not the admin token.",
            variable=ADMIN_TOKEN_VARIABLE,
            status_code=401,
        )
    response: Redirect = Redirect(target, status_code=303)
    response.set_cookie(session_cookie(request, issue_session(request.app.state)))
    return response


@post("/sign-out", name="ui-sign-out")
async def sign_out(request: Request[Any, Any, Any]) -> Redirect:
    revoke_session(request)
    response: Redirect = Redirect("/sign-in", status_code=303)
    response.set_cookie(session_cookie(request, None))
    return response


HANDLERS: Final = (home, sign_in_page, sign_in, sign_out)
