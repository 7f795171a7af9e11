"""`turbohooks dead-letters list | show | redrive`: what ``/api/dead-letters`` does, through the same operations.

Payloads are printed as JSON; what the letters say (reasons, subjects) as
plain text, never as rich markup: it comes from the outside world.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, cast, get_args

import typer
from rich.table import Table
from rich.text import Text

from ._common import console, fail, load_settings, print_json, run, when

if TYPE_CHECKING:
    from consumers import Engine

__all__ = ("dead_letters_app",)

dead_letters_app = typer.Typer(
    help="Events not delivered and messages refused, with why: list, show, redrive.", no_args_is_help=True
)


def _with_engine(body: Callable[[Engine], Awaitable[None]]) -> None:
    settings = load_settings()

    async def main() -> None:
        from consumers import open_engine  # the SQL side, only for the commands that need it

        async with open_engine(settings, name="cli") as engine:
            await body(engine)

    run(main)


def _plain(value: object) -> Text:
    """A table cell shown as it is: no markup, no emoji codes."""
    return Text("" if value is None else str(value))


@dead_letters_app.command("list")
def list_(
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="Only this subscription's: its id, id prefix or name.")
    ] = None,
    cause: Annotated[
        str | None, typer.Option("--cause", help="delivery_failed, refused, log_refused or unreadable.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only since: 2h, or an RFC 3339 time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page as JSON.")] = False,
) -> None:
    """List the dead letters, newest first."""
    from ..operations import DeadLetterKind, list_dead_letters

    causes = get_args(DeadLetterKind)
    if cause is not None and cause not in causes:
        fail(f"--cause: {cause!r} is not one of {', '.join(causes)}", 2)
    kind = cast("DeadLetterKind | None", cause)
    start = when(since, "--since")

    async def body(engine: Engine) -> None:
        from ..operations import resolve_subscription

        sid = (await resolve_subscription(engine, subscription, "--subscription")).id if subscription else None
        page = await list_dead_letters(engine, subscription_id=sid, cause=kind, since=start, limit=limit)
        if as_json:
            print_json(page)
            return
        more = " (more: see --limit)" if page.next_before_seq else ""
        table = Table(title=f"{len(page.items)} dead letters{more}")
        for column in ("seq", "dead at", "cause", "subscription", "subject", "redrive", "reason"):
            table.add_column(column)
        for item in page.items:
            table.add_row(
                _plain(item.seq),
                _plain(f"{item.dead_at:%Y-%m-%d %H:%M:%S}"),
                _plain(item.cause),
                _plain(item.subscription_id),
                _plain(item.subject),
                _plain("yes" if item.redrivable else "no"),
                _plain(item.reason),
            )
        console.print(table)

    _with_engine(body)


@dead_letters_app.command("show")
def show(seq: Annotated[int, typer.Argument(min=1, help="The letter's sequence in the dead-letter stream.")]) -> None:
    """Print one dead letter as JSON, with all it keeps (the event, or the raw bytes in base64)."""
    from ..operations import get_dead_letter

    async def body(engine: Engine) -> None:
        print_json(await get_dead_letter(engine, seq))

    _with_engine(body)


@dead_letters_app.command("redrive")
def redrive(
    seq: Annotated[int | None, typer.Argument(min=1, help="The letter's sequence in the dead-letter stream.")] = None,
    subscription: Annotated[
        str | None,
        typer.Option("--subscription", help="Redrive every dead letter of this subscription (id, prefix or name)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Deliver a dead letter once more (queued for a worker), or all of a subscription's."""
    from ..operations import redrive_dead_letter, redrive_subscription_dead_letters

    if (seq is None) == (subscription is None):
        fail("give either SEQ or --subscription ID", 2)

    async def body(engine: Engine) -> None:
        if seq is not None:
            one = await redrive_dead_letter(engine, seq)
            if as_json:
                print_json(one)
                return
            console.print(
                _plain(f"queued dead letter {one.seq}: event {one.event_id} to subscription {one.subscription_id}")
            )
            return
        from ..operations import resolve_subscription

        assert subscription is not None
        sub = await resolve_subscription(engine, subscription, "--subscription")
        summary = await redrive_subscription_dead_letters(engine, sub.id)
        if as_json:
            print_json(summary)
            return
        more = " (more left: run it again)" if summary.truncated else ""
        console.print(_plain(f"queued {summary.queued} dead letters; {summary.refused} left{more}"))
        for refusal in summary.refusals:
            console.print(_plain(f"  {refusal.seq}: {refusal.reason}"))

    _with_engine(body)
