"""`turbohooks subscriptions …` and `turbohooks deliveries …`.

What the admin API does, the CLI does too, through the same operations
(``gateway.operations``): retry, recover, replay, test-send.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from consumers import DeliveryStatus, Subscription
from integrations import INTEGRATION_NAMES
from streams import parse_duration

from ._common import console, fail, load_settings, print_json, run, when
from ._safe import SafeTable as Table
from ._safe import safe, styled

if TYPE_CHECKING:
    from consumers import Engine

__all__ = ("deliveries_app", "subscriptions_app")

subscriptions_app = typer.Typer(help="Create and manage webhook subscriptions.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Read the delivery log; retry failed deliveries.", no_args_is_help=True)


def _with_engine(body: Callable[[Engine], Awaitable[None]]) -> None:
    settings = load_settings()

    async def main() -> None:
        # The SQL side is imported here, not at start: `turbohooks worker` loads this module too.
        from consumers import open_engine

        async with open_engine(settings, name="cli") as engine:
            await body(engine)  # its errors are one line each, translated once in run()

    run(main)


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{what}: {value!r} is not a UUID", 2)


def _view(sub: Subscription, *, with_secret: bool = False) -> object:
    from consumers import subscription_view

    return subscription_view(sub, with_secret=with_secret)


def _show(sub: Subscription, *, with_secret: bool = False) -> None:
    print_json(_view(sub, with_secret=with_secret))


@subscriptions_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name for people (unique).")],
    url: Annotated[str, typer.Option("--url", help="Where to deliver (https unless WEBHOOK_ALLOW_HTTP).")],
    event_types: Annotated[
        str, typer.Option("--event-types", help="Comma-separated patterns: 'issue.*,comment.created', '*'.")
    ],
    integration: Annotated[
        str, typer.Option("--integration", help=f"One of {', '.join(INTEGRATION_NAMES)}.")
    ] = "webhook",
    config: Annotated[str | None, typer.Option("--config", help="Integration config as a JSON object.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", help="Custom header 'Name: value', repeatable.")
    ] = None,
    retry_schedule: Annotated[
        str | None, typer.Option("--retry-schedule", help="This subscription's own delays: 5s,1m,10m.")
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
) -> None:
    """Create a subscription; prints it as JSON with its secret (shown this once)."""
    headers: dict[str, str] = {}
    for item in header or []:
        key, sep, value = item.partition(":")
        if not sep:
            fail(f"--header: {item!r} is not 'Name: value'", 2)
        headers[key.strip()] = value.strip()
    integration_config: dict[str, Any] = {}
    if config is not None:
        try:
            integration_config = msgspec.json.decode(config)
        except msgspec.DecodeError as exc:
            fail(f"--config: not valid JSON ({exc})", 2)
        if not isinstance(integration_config, dict):
            fail("--config: must be a JSON object", 2)
    schedule = None
    if retry_schedule is not None:
        try:
            schedule = [parse_duration(part) for part in retry_schedule.split(",") if part.strip()]
        except ValueError as exc:
            fail(f"--retry-schedule: {exc}", 2)
    from consumers import SubscriptionCreate

    new = SubscriptionCreate(
        name=name,
        url=url,
        event_types=[p for p in event_types.split(",") if p.strip()],
        integration=integration,
        integration_config=integration_config,
        headers=headers,
        active=not paused,
        retry_schedule=schedule,
    )

    async def body(engine: Engine) -> None:
        _show(await engine.service.create(new), with_secret=True)

    _with_engine(body)


@subscriptions_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List subscriptions."""

    async def body(engine: Engine) -> None:
        subs = await engine.subscriptions.list(limit=1000)
        if as_json:
            print_json([_view(s) for s in subs])
            return
        table = Table(title=f"{len(subs)} subscriptions")
        for col in ("id", "name", "integration", "status", "event types", "url"):
            table.add_column(col)
        for s in subs:
            colour = {"active": "green", "paused": "yellow", "disabled": "red"}[s.status]
            table.add_row(str(s.id), s.name, s.integration, styled(s.status, colour), ", ".join(s.event_types), s.url)
        console.print(table)

    _with_engine(body)


@subscriptions_app.command("show")
def show(subscription_id: Annotated[str, typer.Argument(help="Subscription id.")]) -> None:
    """Show one subscription (its secret is not shown: rotate it to get a new one)."""
    sid = _uuid(subscription_id, "subscription id")

    async def body(engine: Engine) -> None:
        _show(await engine.service.get(sid))

    _with_engine(body)


def _action(verb: str, doc: str, with_secret: bool = False) -> None:
    def command(subscription_id: Annotated[str, typer.Argument(help="Subscription id.")]) -> None:
        sid = _uuid(subscription_id, "subscription id")

        async def body(engine: Engine) -> None:
            method = {
                "pause": engine.service.pause,
                "resume": engine.service.resume,
                "rotate-secret": engine.service.rotate_secret,
            }[verb]
            _show(await method(sid), with_secret=with_secret)

        _with_engine(body)

    command.__doc__ = doc
    subscriptions_app.command(verb)(command)


_action("pause", "Pause delivery; events keep accumulating in the subscription's backlog.")
_action("resume", "Resume delivery (also of a disabled subscription), backlog first.")
_action("rotate-secret", "New secret (printed once); the old one keeps signing for WEBHOOK_SECRET_GRACE.", True)


@subscriptions_app.command("test")
def send_test(
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Send a signed test event now (not queued, not logged); exit 1 unless the receiver answers 2xx."""
    sid = _uuid(subscription_id, "subscription id")

    async def body(engine: Engine) -> None:
        from ..operations import send_test_event

        result = await send_test_event(engine, sid)
        if as_json:
            print_json(result)
        else:
            answer = str(result.status) if result.status is not None else "no answer"
            console.print(
                f"{result.event_type} to {result.url}: {answer} in {result.latency_ms:.0f} ms",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            if result.body:
                note = "\n… (truncated)" if result.truncated else ""
                console.print(result.body + note, highlight=False, markup=False, soft_wrap=True)
        if not result.success:
            fail(f"the receiver did not answer 2xx: {result.error or f'status {result.status}'}")

    _with_engine(body)


@subscriptions_app.command("recover")
def recover(
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    since: Annotated[str, typer.Option("--since", help="Failed since: 2h, 30m, 7d ago, or an RFC 3339 time.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Queue one more attempt of every delivery that failed since --since (the workers deliver them)."""
    sid = _uuid(subscription_id, "subscription id")
    start = when(since, "--since")
    assert start is not None

    async def body(engine: Engine) -> None:
        from ..operations import recover_failed

        result = await recover_failed(engine, sid, start)
        if as_json:
            print_json(result)
            return
        console.print(
            f"queued {result.queued} failed deliveries of subscription {sid} since "
            f"{result.since:%Y-%m-%d %H:%M:%S} UTC; the workers deliver them",
            highlight=False,
            soft_wrap=True,
        )
        if result.truncated:
            console.print(f"more than {result.max_deliveries} failed: run it again once these are delivered")

    _with_engine(body)


@subscriptions_app.command("delete")
def delete(subscription_id: Annotated[str, typer.Argument(help="Subscription id.")]) -> None:
    """Delete a subscription, its backlog and its delivery log."""
    sid = _uuid(subscription_id, "subscription id")

    async def body(engine: Engine) -> None:
        await engine.service.delete(sid)
        console.print(f"deleted subscription {sid}")

    _with_engine(body)


@deliveries_app.command("list")
def deliveries_list(
    subscription: Annotated[str | None, typer.Option("--subscription", help="Only this subscription's.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="pending, success or failed.")] = None,
    event_type: Annotated[str | None, typer.Option("--event-type", help="Only this event type.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only the last 10m, 2h, 1d.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List deliveries, newest first."""
    sid = _uuid(subscription, "--subscription") if subscription else None
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
        rows = await engine.deliveries.list(
            subscription_id=sid, status=wanted_status, event_type=event_type, since=start, limit=limit
        )
        if as_json:
            print_json(rows)
            return
        table = Table(title=f"{len(rows)} deliveries")
        for col in ("id", "event type", "status", "attempts", "code", "created", "error"):
            table.add_column(col)
        for d in rows:
            colour = {"success": "green", "pending": "yellow", "failed": "red"}.get(d.status, "white")
            table.add_row(
                str(d.id),
                d.event_type,
                styled(d.status, colour),
                str(d.attempts),
                str(d.response_code or ""),
                f"{d.created_at:%Y-%m-%d %H:%M:%S}",
                (d.error_message or "")[:60],
            )
        console.print(table)

    _with_engine(body)


@deliveries_app.command("show")
def deliveries_show(delivery_id: Annotated[str, typer.Argument(help="Delivery id.")]) -> None:
    """Show one delivery with every attempt."""
    did = _uuid(delivery_id, "delivery id")

    async def body(engine: Engine) -> None:
        print_json(await engine.deliveries.get(did))

    _with_engine(body)


@deliveries_app.command("retry")
def deliveries_retry(delivery_id: Annotated[str, typer.Argument(help="Delivery id.")]) -> None:
    """Deliver once more now (a worker of the subscription's integration sends it)."""
    did = _uuid(delivery_id, "delivery id")

    async def body(engine: Engine) -> None:
        from ..operations import retry_delivery

        sub = await retry_delivery(engine, did)
        console.print(f"queued a retry of delivery {did} to {safe(sub.name)} ({safe(sub.url)})")

    _with_engine(body)
