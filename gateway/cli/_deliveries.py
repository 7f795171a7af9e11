"""`turbohooks deliveries list | show | retry`: the delivery log.

A delivery is named by its id or a unique prefix of it (the 8 hex digits the
table shows); ``--subscription`` takes a subscription's id, prefix or name.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer
from rich import box
from rich.table import Table

from consumers import DeliveryStatus
from streams import parse_duration

from ._common import console, fail, print_json
from ._engine import WideOption, shown_id, with_engine

if TYPE_CHECKING:
    from consumers import DeliveryDetail, Engine

__all__ = ("deliveries_app",)

deliveries_app = typer.Typer(help="Read the delivery log; retry failed deliveries.", no_args_is_help=True)

_DeliveryArg = Annotated[
    str, typer.Argument(help="Delivery id or its first characters (as in `deliveries list`).", show_default=False)
]


@deliveries_app.command("list")
def deliveries_list(
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="Only this subscription's (id, id prefix or name).")
    ] = None,
    status: Annotated[str | None, typer.Option("--status", help="pending, success or failed.")] = None,
    event_type: Annotated[str | None, typer.Option("--event-type", help="Only this event type.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only the last 10m, 2h, 1d.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    wide: WideOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print every field as JSON.")] = False,
) -> None:
    """List deliveries, newest first."""
    wanted_status: DeliveryStatus | None = None
    if status is not None:
        if status not in ("pending", "success", "failed"):
            fail("--status: choose pending, success or failed", 2)
        wanted_status = status  # type: ignore[assignment]
    start = None
    if since is not None:
        try:
            start = datetime.now(UTC) - timedelta(seconds=parse_duration(since))
        except ValueError as exc:
            fail(f"--since: {exc}", 2)

    async def body(engine: Engine) -> None:
        from ..operations import resolve_subscription

        sid = (await resolve_subscription(engine, subscription, "--subscription")).id if subscription else None
        rows = await engine.deliveries.list(
            subscription_id=sid, status=wanted_status, event_type=event_type, since=start, limit=limit
        )
        if as_json:
            print_json(rows)
            return
        # No vertical rules: an 80-column terminal keeps whole ids, times and a readable error.
        table = Table(title=f"{len(rows)} deliveries", box=box.SIMPLE)
        table.add_column("id", no_wrap=True)
        table.add_column("event type", overflow="fold")
        for col in ("status", "tries", "code", "created"):
            table.add_column(col, no_wrap=True)
        # The error takes what is left of the terminal, folded over lines rather than cut away.
        table.add_column("error", overflow="fold", min_width=16, ratio=1)
        for d in rows:
            colour = {"success": "green", "pending": "yellow", "failed": "red"}.get(d.status, "white")
            table.add_row(
                shown_id(d.id, wide),
                d.event_type,
                f"[{colour}]{d.status}[/{colour}]",
                str(d.attempts),
                str(d.response_code or ""),
                f"{d.created_at:%m-%d %H:%M:%S}",
                d.error_message or "",
            )
        console.print(table, highlight=False)

    with_engine(body)


def _readable(detail: DeliveryDetail) -> dict[str, Any]:
    """The delivery as JSON, its payload (and JSON answers) as JSON rather than base64 or a string."""
    document: dict[str, Any] = msgspec.to_builtins(detail)
    try:
        document["payload"] = json.loads(detail.payload) if detail.payload else None
    except ValueError:  # a body that was not JSON: shown as text
        document["payload"] = detail.payload.decode("utf-8", errors="replace")
    return document


@deliveries_app.command("show")
def deliveries_show(delivery: _DeliveryArg) -> None:
    """Show one delivery with every attempt (numbered 1, 2, … whatever triggered it) and the payload sent."""

    async def body(engine: Engine) -> None:
        from ..operations import resolve_delivery

        print_json(_readable(await engine.deliveries.get(await resolve_delivery(engine, delivery, "delivery id"))))

    with_engine(body)


@deliveries_app.command("retry")
def deliveries_retry(delivery: _DeliveryArg) -> None:
    """Deliver once more now (a worker of the subscription's integration sends it)."""

    async def body(engine: Engine) -> None:
        from ..operations import resolve_delivery, retry_delivery

        did = await resolve_delivery(engine, delivery, "delivery id")
        sub = await retry_delivery(engine, did)
        console.print(f"queued a retry of delivery {did} to {sub.name} ({sub.url})", highlight=False, soft_wrap=True)

    with_engine(body)
