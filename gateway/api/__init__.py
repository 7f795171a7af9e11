"""The admin API (Litestar): the app, its routers (one per area), problems, schemas and metrics.

``create_app(engine, admin_token=...)`` builds the app over an open
:class:`~consumers.Engine`; ``serve_gateway(...)`` runs it under uvicorn. The
handlers are thin: what they do is in :mod:`gateway.operations`, which the CLI
calls too.
"""

from __future__ import annotations

from ._app import MAX_BODY_SIZE, create_app, serve_gateway
from ._metrics import GatewayMetrics
from ._problems import PROBLEM_MEDIA_TYPE
from ._routes.events import MAX_EVENT_ID_SCAN, MAX_EVENT_SCAN

__all__ = (
    "MAX_BODY_SIZE",
    "MAX_EVENT_ID_SCAN",
    "MAX_EVENT_SCAN",
    "PROBLEM_MEDIA_TYPE",
    "GatewayMetrics",
    "create_app",
    "serve_gateway",
)
