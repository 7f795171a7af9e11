"""``GET /api/stats``: delivery figures over a window, each subscription's lag and health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from litestar import Router, get
from litestar.params import QueryParameter

from ...operations import read_health, trouble
from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._metrics import read_lags
from .._params import EngineDep, parse_window
from .._problems import responses
from .._schemas import StatsView

__all__ = ("router",)


@get(
    "/",
    summary="Success and failure rates, latencies, busiest webhooks and events, lag",
    responses=responses(400, 422, 503),
)
async def get_stats(
    engine: EngineDep,
    window: Annotated[
        str, QueryParameter(max_length=32, description="How far back the figures go: `1h`, `24h`, `7d`.")
    ] = "24h",
) -> StatsView:
    seconds = parse_window(window)
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    stats = await engine.deliveries.stats(since)
    health = sorted(await read_health(engine), key=trouble)
    return StatsView(
        window=window.strip(),
        window_seconds=seconds,
        since=since,
        deliveries=stats,
        lag=await read_lags(engine),
        health=health,
    )


router = Router(
    path="/api/stats", tags=["stats"], guards=ADMIN_GUARDS, security=ADMIN_SECURITY, route_handlers=[get_stats]
)
