"""``GET /ready`` (NATS, streams, database) and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

import asyncio
from typing import Final

from litestar import Response, Router, get

from streams import ATTEMPTS_STREAM, DEAD_LETTER_STREAM, NATS_ERRORS, REDELIVER_STREAM, TurbohooksError

from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._params import EngineDep, MetricsDep
from .._problems import ProblemException, problem, responses
from .._schemas import FieldProblem, ReadyCheck, ReadyStatus

__all__ = ("router",)

_CHECK_TIMEOUT: Final = 2.0
_FAILURES: Final = (*NATS_ERRORS, TurbohooksError)
"""What a check may fail with: NATS unreachable, or the database's ``ping`` refusing."""
# The classic text format, which every Prometheus version reads; Litestar adds the charset.
_CONTENT_TYPE: Final = "text/plain; version=0.0.4"


async def _streams(engine: EngineDep) -> str | None:
    missing: list[str] = []
    for name in (engine.settings.stream_name, ATTEMPTS_STREAM, DEAD_LETTER_STREAM, REDELIVER_STREAM):
        try:
            await asyncio.wait_for(engine.js.stream_info(name), _CHECK_TIMEOUT)
        except _FAILURES as exc:
            missing.append(f"{name} ({type(exc).__name__}{f': {exc}' if str(exc) else ''})")
    return f"not available: {', '.join(missing)}" if missing else None


@get(
    "/ready",
    summary="NATS connected, streams present, database reachable",
    responses=responses(503),
)
async def ready(engine: EngineDep) -> ReadyStatus:
    checks: list[ReadyCheck] = []
    connected = engine.nc.is_connected
    checks.append(ReadyCheck(name="nats", ok=connected, detail=None if connected else "not connected"))
    streams = await _streams(engine) if connected else "unknown: NATS is not connected"
    checks.append(ReadyCheck(name="streams", ok=streams is None, detail=streams))
    try:
        await engine.db.ping(timeout=_CHECK_TIMEOUT)
        checks.append(ReadyCheck(name="database", ok=True))
    except _FAILURES as exc:
        checks.append(ReadyCheck(name="database", ok=False, detail=str(exc)))
    failed = [FieldProblem(field=c.name, message=c.detail or "failed") for c in checks if not c.ok]
    if failed:
        detail = "not ready: " + "; ".join(f"{f.field} {f.message}" for f in failed)
        raise ProblemException(problem(503, detail, field=failed[0].field, errors=failed))
    return ReadyStatus(checks=checks)


@get(
    "/metrics",
    summary="Prometheus metrics",
    description="Deliveries of the last 24 hours by status, subscriptions by status, each subscription's "
    "pending and in-flight events, and the API's own request counts; under `turbohooks up`, the worker's, "
    "recorder's and scheduler's metrics too. Every sample carries a `process` label.",
    media_type="text/plain",
    response_description="The Prometheus text exposition format.",
    responses=responses(),
)
async def metrics(engine: EngineDep, gateway_metrics: MetricsDep) -> Response[bytes]:
    await gateway_metrics.refresh(engine)
    return Response(content=gateway_metrics.render(), media_type=_CONTENT_TYPE)


router = Router(
    path="/", tags=["health"], guards=ADMIN_GUARDS, security=ADMIN_SECURITY, route_handlers=[ready, metrics]
)
