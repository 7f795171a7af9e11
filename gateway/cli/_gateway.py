"""`turbohooks gateway` (the admin API) and `turbohooks replay`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consumers import ensure_env_subscriptions
from streams import ConfigError, EventValidationError
from streams.settings import HealthSettings

from ._common import console, err_console, fail, freeze_heap, load_role, load_settings, print_json, run, when
from ._processes import _stop_on_signal
from ._safe import SafeTable as Table
from ._safe import safe

if TYPE_CHECKING:
    from ..operations import ReplayItem

__all__ = ("register",)

_SHOWN: Final = 20
"""Events a dry run lists in the table (``--json`` gives them all)."""


def gateway(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free one).")] = 8000,
) -> None:
    """Run the admin API (Litestar): subscriptions, delivery log, retry, replay, stats, metrics."""
    # Litestar, the routes and the SQL side load with this command only.
    from consumers import open_engine

    from .._token import ADMIN_TOKEN_FILE, ADMIN_TOKEN_VARIABLE, load_or_create_admin_token
    from ..api import serve_gateway
    from ..operations import AlertEvaluator

    settings = load_settings()
    health = load_role(HealthSettings)
    try:
        token, created = load_or_create_admin_token(settings)
    except ConfigError as exc:
        fail(str(exc), 2)

    async def main() -> None:
        async with open_engine(settings, name="gateway") as engine, _stop_on_signal() as stop:
            for sub in await ensure_env_subscriptions(engine.service):
                console.print(
                    f"subscription {safe(sub.name)} ({sub.integration}) from the environment → {safe(sub.url)}"
                )

            def ready(url: str) -> None:
                # soft_wrap: a URL or a token broken over two lines cannot be copied.
                console.print(
                    f"[green]admin API[/green] on [bold]{url}[/bold] "
                    f"(OpenAPI: {url}/schema/openapi.json); Ctrl-C stops it",
                    soft_wrap=True,
                )
                stored = settings.data_dir / ADMIN_TOKEN_FILE
                if created:
                    # Not the token itself: stdout ends up in logs; the file is mode 0600.
                    console.print(
                        f"admin token (new, stored in {stored}; not printed)", highlight=False, soft_wrap=True
                    )
                else:
                    console.print(f"admin token: {ADMIN_TOKEN_VARIABLE} or {stored}", soft_wrap=True)

            freeze_heap()
            # The alerts are evaluated where the figures are read: NATS and the database, as the admin.
            alerts = asyncio.create_task(AlertEvaluator(engine, health).run(stop), name="alerts")
            try:
                await serve_gateway(engine, host=host, port=port, admin_token=token, stop=stop, on_ready=ready)
            finally:
                stop.set()
                await alerts
        console.print("stopped")

    run(main)


def _show(items: list[ReplayItem], dry_run: bool) -> None:
    table = Table(title="would be sent" if dry_run else "queued")
    for col in ("seq", "event type", "event id", "stored at"):
        table.add_column(col)
    for item in items[:_SHOWN]:
        table.add_row(
            str(item.seq),
            item.event_type,
            str(item.event_id or "(not an event)"),
            f"{item.stored_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)
    if len(items) > _SHOWN:
        console.print(f"… and {len(items) - _SHOWN} more (--json lists them all)")


def replay(
    subscription: Annotated[
        str, typer.Option("--subscription", help="The subscription: its id, id prefix or name.", show_default=False)
    ],
    since: Annotated[str | None, typer.Option("--since", help="Start: 2h, 30m, 7d ago, or an RFC 3339 time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End (exclusive): a duration ago or a time.")] = None,
    from_seq: Annotated[int | None, typer.Option("--from-seq", min=1, help="Start at this stream sequence.")] = None,
    to_seq: Annotated[int | None, typer.Option("--to-seq", min=1, help="End at this stream sequence.")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--event-type", help="Only these patterns ('issue.*'), repeatable.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be sent; send nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print every event as JSON.")] = False,
) -> None:
    """Deliver stored events again to one subscription (its live consumer is not touched)."""
    from consumers import open_engine

    from ..operations import ReplayRange, replay_subscription, resolve_subscription

    settings = load_settings()
    spec = ReplayRange(
        since=when(since, "--since"),
        until=when(until, "--until"),
        from_seq=from_seq,
        to_seq=to_seq,
        event_types=event_type,
        dry_run=dry_run,
    )
    try:
        spec.check()
    except EventValidationError as exc:
        fail(f"--{exc.field.replace('_', '-')}: {exc.problem}", 2)

    async def main() -> None:
        async with open_engine(settings, name="cli") as engine:
            sub = await resolve_subscription(engine, subscription, "--subscription")
            items: list[ReplayItem] = []
            handled = queued = 0
            keep = dry_run or as_json  # a real replay of millions need not hold them all
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            ) as progress:
                task = progress.add_task("reading" if dry_run else "queueing", total=None)
                overall: int | None = None

                def update(done: int, planned: int) -> None:
                    progress.update(task, completed=handled + done, total=overall or planned)

                current = spec
                # One call handles MAX_REPLAY_EVENTS at most: continue from next_seq, up to the
                # end the first call saw, so events published meanwhile are not chased forever.
                while True:
                    result = await replay_subscription(engine, sub, current, progress=update)
                    overall = overall or result.matched
                    handled += len(result.events)
                    queued += result.queued
                    if keep:
                        items.extend(result.events)
                    if result.next_seq is None:
                        break
                    current = ReplayRange(
                        from_seq=result.next_seq,
                        to_seq=result.last_seq,
                        event_types=spec.event_types,
                        dry_run=dry_run,
                    )
        if as_json:
            print_json(items)
            return
        if dry_run:
            _show(items, dry_run=True)
            console.print(f"dry run: {len(items)} events of {safe(sub.name)} would be sent; nothing was queued")
        else:
            console.print(
                f"queued {queued} events for {safe(sub.name)} ({safe(sub.url)}); the workers deliver them",
                soft_wrap=True,
            )

    run(main)


def register(app: typer.Typer) -> None:
    """Add `gateway` and `replay` to ``app``."""
    app.command()(gateway)
    app.command()(replay)
