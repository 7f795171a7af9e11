"""`turbohooks top`: every subscription's health, live in the terminal, the most troubled first.

The figures are :func:`gateway.operations.read_health`'s (JetStream consumers and the
delivery log, read directly like the other commands), the same as ``GET /api/stats``
and the gateway's ``/metrics``; events not sent in the last 5 minutes (filtered, held by the rate limit) too.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Final

import typer
from nats.errors import Error as NatsError
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from streams import TurbohooksError

from ._common import console
from ._engine import with_engine
from ._safe import SafeTable, plain, styled

if TYPE_CHECKING:
    from consumers import Engine

    from ..operations import SubscriptionHealth

__all__ = ("register",)

_STATUS_STYLE: Final = {"active": "green", "paused": "yellow", "disabled": "red"}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:02.0f}m"


def _rate(rate: float | None) -> Text:
    if rate is None:
        return plain("-")
    style = "green" if rate >= 0.99 else "yellow" if rate >= 0.8 else "red"
    return styled(f"{rate * 100:.1f}%", style)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def frame(rows: list[SubscriptionHealth], *, limit: int, error: str | None = None) -> RenderableType:
    """One screen: a header line and the table of the ``limit`` most troubled subscriptions."""
    from ..operations import trouble

    shown = sorted(rows, key=trouble)[:limit]
    table = SafeTable(expand=False, caption=f"{len(shown)} of {len(rows)} subscriptions, most troubled first")
    columns = (
        "name",
        "status",
        "pending",
        "oldest",
        "in flight",
        "ok 5m",
        "p95 5m",
        "retries",
        "dead",
        "filtered",
        "held",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("name", "status") else "right", no_wrap=True)
    for sub in shown:
        p95 = sub.last_5m.latency_p95_ms
        table.add_row(
            sub.name,
            styled(sub.status, _STATUS_STYLE.get(sub.status, "")),
            _count(sub.pending),
            _age(sub.oldest_pending_seconds),
            _count(sub.in_flight),
            _rate(sub.last_5m.success_rate),
            "-" if p95 is None else f"{p95:.0f} ms",
            str(sub.retries_scheduled),
            styled(str(sub.dead_letters), "red") if sub.dead_letters else "0",
            str(sub.last_5m.filtered),
            str(sub.last_5m.throttled),
        )
    header = plain(f"turbohooks top — {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    parts: list[RenderableType] = [header, table]
    if error is not None:
        parts.insert(1, styled(error, "red"))
    return Group(*parts)


async def _read(engine: Engine) -> list[SubscriptionHealth]:
    from ..operations import read_health

    return await read_health(engine)


def top(
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between two refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit (no live screen).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Subscriptions shown (the most troubled).")] = 50,
) -> None:
    """Live health of every subscription: waiting, oldest age, in flight, success and p95 (5 min), retries, dead."""

    async def body(engine: Engine) -> None:
        rows = await _read(engine)
        if once:
            console.print(frame(rows, limit=limit))
            return
        with (
            Live(frame(rows, limit=limit), console=console, auto_refresh=False) as live,
            contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError),
        ):
            while True:
                await asyncio.sleep(interval)
                error: str | None = None
                try:
                    rows = await _read(engine)
                except (NatsError, TimeoutError, OSError, TurbohooksError) as exc:
                    # The last figures stay on screen, under one line saying why they are old.
                    error = f"could not refresh: {type(exc).__name__}: {exc}".splitlines()[0]
                live.update(frame(rows, limit=limit, error=error), refresh=True)

    with_engine(body)


def register(app: typer.Typer) -> None:
    app.command("top")(top)
