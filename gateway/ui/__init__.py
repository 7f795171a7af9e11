"""The web UI: Litestar routes rendering Jinja2 templates, served by the gateway beside the admin API.

    /sign-in, /sign-out              the admin token for a session cookie (HttpOnly, SameSite=Strict)
    /settings/webhooks[...]          subscriptions, delivery log, analytics, live events, event catalog
    /ui/static/...                   the UI's CSS and JS, and the vendored libraries (static/vendor/README.md)

:func:`ui_routers` gives the routers to mount (the pages carry the session
guard and CSRF protection; nothing of ``/api`` is touched),
:data:`TEMPLATE_CONFIG` the app's template config, :func:`openapi_render_plugins`
the OpenAPI pages with their assets served locally, and
:data:`SESSION_OR_TOKEN_GUARDS` the OpenAPI router's guard: the bearer token, or
a signed-in session. Nothing is fetched from outside the gateway.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import MediaType, Request, Response, Router
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.middleware import DefineMiddleware
from litestar.openapi.plugins import OpenAPIRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from nats.errors import Error as NatsError

from streams import ConflictError, EventValidationError, NotFoundError, TurbohooksError

from . import _analytics, _auth, _events, _log, _subscriptions
from ._auth import sign_in_url
from ._common import STATIC_DIR, STATIC_PATH, TEMPLATE_CONFIG, render
from ._session import SESSION_OR_TOKEN_GUARDS, UI_SESSION_GUARDS, CsrfMiddleware, SignInRequired

__all__ = ("SESSION_OR_TOKEN_GUARDS", "TEMPLATE_CONFIG", "openapi_render_plugins", "ui_routers")

_NATS_DOWN: Final = "NATS did not answer in time; nothing was changed. Try again in a moment."
_SWAGGER: Final = f"{STATIC_PATH}/vendor/swagger-ui-5.35.0"


def _sign_in(request: Request[Any, Any, Any], exc: NotAuthorizedException) -> Response[Any]:
    target = sign_in_url(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    if request.headers.get("hx-request"):
        return Response(content="", status_code=401, headers={"HX-Redirect": target})
    if request.url.path.endswith("/stream"):
        return Response(content="sign in first", status_code=401, media_type=MediaType.TEXT)
    return Redirect(target, status_code=303)


def _error_page(status: int, say: str | None = None) -> Any:
    def handler(request: Request[Any, Any, Any], exc: Exception) -> Template:
        detail = say or (exc.detail if isinstance(exc, HTTPException) else str(exc))
        return render("error.html.j2", request, status=status, detail=detail, status_code=status)

    return handler


def ui_routers(admin_token: str) -> list[Router]:
    """The UI's page router (session guard, CSRF) and its static files router (public)."""
    pages = Router(
        path="/",
        route_handlers=[
            *_auth.HANDLERS,
            *_subscriptions.HANDLERS,
            *_log.HANDLERS,
            *_analytics.HANDLERS,
            *_events.HANDLERS,
        ],
        guards=UI_SESSION_GUARDS,
        middleware=[DefineMiddleware(CsrfMiddleware, admin_token=admin_token)],
        include_in_schema=False,
        exception_handlers={
            SignInRequired: _sign_in,
            NotFoundError: _error_page(404),
            ConflictError: _error_page(409),
            EventValidationError: _error_page(422),
            TurbohooksError: _error_page(503),
            NatsError: _error_page(503, _NATS_DOWN),
            TimeoutError: _error_page(503, _NATS_DOWN),
        },
    )
    static = create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC_DIR],
        include_in_schema=False,
        name="ui-static",
    )
    return [pages, static]


def openapi_render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at ``/schema`` and ``/schema/swagger`` (its JS and CSS from the gateway, no CDN); the YAML."""
    return [
        SwaggerRenderPlugin(
            path=["/", "/swagger"],
            js_url=f"{_SWAGGER}/swagger-ui-bundle.js",
            css_url=f"{_SWAGGER}/swagger-ui.css",
            standalone_preset_js_url=f"{_SWAGGER}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/svg+xml' href='{STATIC_PATH}/favicon.svg'>",
        ),
        YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
    ]
