"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from typing import Final

from litestar import Response, get

from .._problems import responses
from ._params import EngineDep, MetricsDep

__all__ = ("metrics",)

# The classic text format, which every Prometheus version reads; Litestar adds the charset.
_CONTENT_TYPE: Final = "text/plain; version=0.0.4"


@get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics",
    description="Deliveries of the last 24 hours by status, subscriptions by status, each subscription's "
    "pending and in-flight events, and the API's own request counts.",
    media_type="text/plain",
    response_description="The Prometheus text exposition format.",
    responses=responses(),
)
async def metrics(engine: EngineDep, gateway_metrics: MetricsDep) -> Response[bytes]:
    await gateway_metrics.refresh(engine)
    return Response(content=gateway_metrics.render(), media_type=_CONTENT_TYPE)
