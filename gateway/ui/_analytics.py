"""``/settings/webhooks/analytics``: rates, latencies, failures, busiest subscriptions and events, over a window.

The headline figures of the overall view are ``engine.deliveries.stats`` (the
call behind ``GET /api/stats``), so the page and the API say the same numbers;
the charts are the same definitions over time (:func:`._queries.series`).
Events published per type are counted from the stream itself.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from litestar import Request, get
from litestar.response import Template

from consumers import Engine
from streams import EventValidationError, event_type_of_subject

from ..api._metrics import read_lags
from ..api._params import EngineDep, parse_window
from ..operations import ALL_SUBJECTS, read_forward, seq_at_time, stream_bounds
from ._common import render
from ._queries import series

__all__ = ("HANDLERS",)

WINDOWS: Final = ("1h", "6h", "24h", "7d", "30d")
_EVENT_SCAN: Final = 50_000
"""Events counted at most (headers only) for "events published per type"."""


async def published_per_type(engine: Engine, since: datetime) -> tuple[list[tuple[str, int]], int, bool]:
    """Events stored since ``since`` by type, most first; how many were read; whether the count stopped early."""
    js, stream = engine.js, engine.settings.stream_name
    bounds = await stream_bounds(js, stream)
    first = await seq_at_time(js, stream, since, bounds)
    counts: Counter[str] = Counter()
    read = 0
    reader = read_forward(js, stream, ALL_SUBJECTS, first=first, last=bounds.last, headers_only=True)
    async with contextlib.aclosing(reader) as messages:
        async for msg in messages:
            counts[event_type_of_subject(msg.subject)] += 1
            read += 1
            if read >= _EVENT_SCAN:
                return counts.most_common(), read, True
    return counts.most_common(), read, False


@get("/settings/webhooks/analytics", name="ui-analytics")
async def analytics_page(request: Request[Any, Any, Any], engine: EngineDep) -> Template:
    window = (request.query_params.get("window") or "24h").strip()
    errors: dict[str, str] = {}
    try:
        seconds = parse_window(window)
    except EventValidationError as exc:
        errors[exc.field] = exc.problem
        window, seconds = "24h", 86400.0
    raw_sub = request.query_params.get("subscription_id") or ""
    subscription_id: uuid.UUID | None = None
    if raw_sub:
        try:
            subscription_id = uuid.UUID(raw_sub)
        except ValueError:
            errors["subscription_id"] = "is not a subscription id"
    now = datetime.now(UTC)
    since = now - timedelta(seconds=seconds)
    subs = await engine.subscriptions.list(limit=500)
    chosen = next((s for s in subs if s.id == subscription_id), None)
    if subscription_id is not None and chosen is None:
        errors["subscription_id"] = "no such subscription"
        subscription_id = None
    stats = await engine.deliveries.stats(since)
    drawn = await series(engine, since, now, subscription_id=subscription_id)
    published, read, truncated = await published_per_type(engine, since)
    lags = await read_lags(engine)
    if chosen is None:
        headline = {
            "deliveries": stats.deliveries,
            "success": stats.success,
            "failed": stats.failed,
            "pending": stats.pending,
            "success_rate": stats.success_rate,
            "failure_rate": stats.failure_rate,
            "p50": stats.latency_p50_ms,
            "p95": stats.latency_p95_ms,
            "p99": stats.latency_p99_ms,
        }
    else:
        total = drawn.deliveries
        headline = {
            "deliveries": total,
            "success": drawn.success_total,
            "failed": drawn.failed_total,
            "pending": drawn.pending_total,
            "success_rate": drawn.success_total / total if total else 0.0,
            "failure_rate": drawn.failed_total / total if total else 0.0,
            "p50": drawn.latency_p50,
            "p95": drawn.latency_p95,
            "p99": drawn.latency_p99,
        }
    chart = {
        "labels": drawn.labels,
        "success": drawn.success,
        "failed": drawn.failed,
        "pending": drawn.pending,
        "p50": drawn.p50,
        "p95": drawn.p95,
        "p99": drawn.p99,
        "codes": drawn.by_status_code,
        "kinds": drawn.by_error_kind,
        "event_types": drawn.event_types,
        "published": published[:20],
        "busiest": [[a.name, a.success, a.failed] for a in stats.most_active_subscriptions],
    }
    return render(
        "analytics.html.j2",
        request,
        active="analytics",
        window=window,
        windows=WINDOWS,
        since=since,
        subs=subs,
        chosen=chosen,
        stats=stats,
        headline=headline,
        drawn=drawn,
        published=published,
        published_read=read,
        published_truncated=truncated,
        lags=lags,
        chart=chart,
        errors=errors,
    )


HANDLERS: Final = (analytics_page,)
