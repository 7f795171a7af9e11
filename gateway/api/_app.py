"""The Litestar app of the admin API, and running it under uvicorn.

The caller opens the :class:`~consumers.Engine` and closes it: the app only
borrows it (no lifespan of its own), so ``turbohooks up`` can share one engine
between the gateway, the workers and the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import uvicorn
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.types import Message, Scope

from consumers import Engine
from streams import VERSION, ProcessMetrics, TurbohooksError
from streams.settings import GatewaySettings, HealthSettings

from .._token import ADMIN_TOKEN_VARIABLE
from ..ui import SESSION_OR_TOKEN_GUARDS, TEMPLATE_CONFIG, openapi_render_plugins, ui_routers
from ._audit import audit_actor_middleware
from ._guard import SECURITY_SCHEME, TOKEN_STATE
from ._metrics import GatewayMetrics
from ._problems import EXCEPTION_HANDLERS
from ._routes import ROUTERS
from ._routes.inbound import GITHUB_SECRET_STATE

__all__ = ("MAX_BODY_SIZE", "create_app", "serve_gateway")

MAX_BODY_SIZE: Final = 1 << 20
"""Request bodies larger than this (1 MiB) are refused with 413."""
_SHUTDOWN_GRACE: Final = 10
_VERSION: Final = VERSION

_TAGS: Final = [
    Tag(name="health", description="Liveness, readiness and metrics."),
    Tag(name="events", description="The catalog; publishing; history read from the stream."),
    Tag(name="subscriptions", description="Webhook subscriptions: manage, test, replay."),
    Tag(name="deliveries", description="The delivery log; retries."),
    Tag(name="dead-letters", description="Events not delivered, messages refused, with why; redrive."),
    Tag(name="stats", description="Delivery analytics and lag."),
    Tag(name="audit", description="Who did what, when, from where (admin actions)."),
]


def create_app(
    engine: Engine,
    *,
    admin_token: str,
    gateway: GatewaySettings | None = None,
    max_body_size: int = MAX_BODY_SIZE,
    ui: bool = False,
    siblings: Sequence[ProcessMetrics] = (),
) -> Litestar:
    """The admin API over ``engine``; every route but ``/health`` and the inbound webhooks wants the token.

    Which routes are public is said by their routers (``_routes``), never by a list.
    ``gateway`` holds the inbound webhook's secret (``GITHUB_WEBHOOK_SECRET``); when
    not given, the settings are read now, once, not per request. ``ui`` mounts the web UI
    (``gateway.ui``: its pages want a signed-in session, not the token); ``serve_gateway``
    does, so ``turbohooks up`` serves it. ``siblings``: the metrics of the roles running in this process
    (``up``'s worker, recorder, scheduler), which ``/metrics`` serves with the gateway's own.
    """
    if not admin_token.strip():
        raise ValueError("create_app() needs a non-empty admin token")
    if gateway is None:
        gateway = GatewaySettings.from_env()
    metrics = GatewayMetrics(siblings=siblings, max_subscriptions=HealthSettings.from_env().metrics_subscriptions)

    async def count_request(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            # The route template, not the path: ids in paths would make a label value each.
            route = scope.get("path_template") or "unmatched"
            metrics.count_request(str(scope.get("method", "")), route, message["status"])

    def provide_engine() -> Engine:
        return engine

    def provide_metrics() -> GatewayMetrics:
        return metrics

    return Litestar(
        route_handlers=[*ROUTERS, *(ui_routers(admin_token) if ui else [])],
        template_config=TEMPLATE_CONFIG,
        state=State({TOKEN_STATE: admin_token.encode(), GITHUB_SECRET_STATE: gateway.github_webhook_secret or ""}),
        dependencies={
            "engine": Provide(provide_engine, sync_to_thread=False),
            "gateway_metrics": Provide(provide_metrics, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[count_request],
        middleware=[audit_actor_middleware],
        request_max_body_size=max_body_size,
        openapi_config=OpenAPIConfig(
            title="turbohooks admin API",
            version=_VERSION,
            description="Manage webhook subscriptions, read the delivery log, retry, replay, test, and read "
            f"analytics. Every route but `/health` wants `Authorization: Bearer <{ADMIN_TOKEN_VARIABLE}>`. "
            "Errors are RFC 9457 problem details (`application/problem+json`) naming the offending field.",
            # The schema's pages want the token too, or a signed-in UI session (a browser sends no token).
            openapi_router=Router(
                path="/schema", guards=SESSION_OR_TOKEN_GUARDS, include_in_schema=False, route_handlers=[]
            ),
            # Swagger UI with its assets served by the gateway: the default pages load theirs from a CDN.
            render_plugins=openapi_render_plugins(),
            tags=_TAGS,
            components=Components(
                security_schemes={
                    SECURITY_SCHEME: SecurityScheme(
                        type="http", scheme="bearer", description=f"The admin token ({ADMIN_TOKEN_VARIABLE})."
                    )
                }
            ),
        ),
        logging_config=None,
        debug=False,
    )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the caller owns the signals and sets ``stop``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise TurbohooksError(f"turbohooks: gateway host {host!r} does not resolve ({exc})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise TurbohooksError(
            f"turbohooks: the gateway cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port"
        ) from None
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve_gateway(
    engine: Engine,
    *,
    host: str,
    port: int,
    admin_token: str,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
    gateway: GatewaySettings | None = None,
    siblings: Sequence[ProcessMetrics] = (),
) -> None:
    """Serve the admin API on ``host:port`` until ``stop`` is set; ``on_ready`` gets its URL once listening.

    The socket is bound before uvicorn starts, so a taken port is a
    :class:`~streams.TurbohooksError` naming it (and ``port=0`` picks a free one).
    """
    sock = _listen(host, port)
    config = uvicorn.Config(
        create_app(engine, admin_token=admin_token, gateway=gateway, ui=True, siblings=siblings),
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=_SHUTDOWN_GRACE,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="turbohooks-gateway")
    stopping = asyncio.create_task(stop.wait())
    try:
        while not server.started and not serving.done():
            await asyncio.wait({serving, stopping}, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                break
        if server.started and on_ready is not None:
            on_ready(_url(sock))
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        except SystemExit:  # uvicorn exits the process when startup fails; this is a library
            raise TurbohooksError("turbohooks: the gateway failed to start (see the log above)") from None
        finally:
            sock.close()
