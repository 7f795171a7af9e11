"""`turbohooks subscriptions …` (and the `deliveries` group, from ``_deliveries``).

What the admin API does, the CLI does too, through the same operations
(``gateway.operations``): retry, recover, replay, test-send. Every command that
takes a subscription accepts its id, a unique prefix of it (the 8 hex digits
tables show) or its name (``gateway.operations.resolve_subscription``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
import typer
from rich import box

from consumers import RateLimit, Subscription
from integrations import INTEGRATION_NAMES
from streams import EventValidationError, parse_duration

from ._common import console, fail, print_json, when
from ._deliveries import deliveries_app
from ._engine import SubscriptionArg, WideOption, option_named, shown_id, with_engine
from ._safe import SafeTable as Table
from ._safe import plain, safe, styled

if TYPE_CHECKING:
    from consumers import Engine, SubscriptionPatch

__all__ = ("deliveries_app", "subscriptions_app")

subscriptions_app = typer.Typer(help="Create and manage webhook subscriptions.", no_args_is_help=True)


def _view(sub: Subscription, *, with_secret: bool = False) -> object:
    from consumers import subscription_view

    return subscription_view(sub, with_secret=with_secret)


def _show(sub: Subscription, *, with_secret: bool = False) -> None:
    print_json(_view(sub, with_secret=with_secret))


async def _find(engine: Engine, text: str) -> Subscription:
    from ..operations import resolve_subscription

    return await resolve_subscription(engine, text, "subscription id")


def _headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep:
            fail(f"--header: {item!r} is not 'Name: value'", 2)
        headers[key.strip()] = value.strip()
    return headers


def _json_object(text: str, option: str, example: str = "") -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        fail(f"{option}: not valid JSON ({exc})", 2)
    if not isinstance(value, dict):
        fail(f"{option}: must be a JSON object{example}", 2)
    return value


def _config(text: str) -> dict[str, Any]:
    return _json_object(text, "--config")


def _schedule(text: str) -> list[float]:
    try:
        return [parse_duration(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        fail(f"--retry-schedule: {exc}", 2)


def _patterns(text: str) -> list[str]:
    return [p for p in text.split(",") if p.strip()]


def _filter(text: str) -> dict[str, Any]:
    return _json_object(text, "--filter", """ such as '{"data.current.priority": "high"}'""")


def _template(text: str | None, path: Path | None) -> str | None:
    if text is not None and path is not None:
        fail("--template and --template-file cannot be used together", 2)
    if path is None:
        return text
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--template-file: cannot read {str(path)!r} ({exc.__class__.__name__}: {exc})", 2)


_PER: Final = {"s": "second", "sec": "second", "second": "second", "m": "minute", "min": "minute", "minute": "minute"}


def _rate_limit(text: str) -> RateLimit:
    count, sep, per = text.strip().partition("/")
    if not sep or per.strip().lower() not in _PER or not count.strip().isdigit():
        fail(f"--rate-limit: {text!r} is not a rate such as '10/s' or '600/m' (or 'none')", 2)
    return RateLimit(count=int(count), per=_PER[per.strip().lower()])  # type: ignore[arg-type]


def _fields(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


_HeaderOption = Annotated[list[str] | None, typer.Option("--header", help="Custom header 'Name: value', repeatable.")]
_ScheduleOption = Annotated[
    str | None, typer.Option("--retry-schedule", help="This subscription's own delays: 5s,1m,10m.")
]
_ConfigOption = Annotated[str | None, typer.Option("--config", help="Integration config as a JSON object.")]
_EventTypesHelp = "Comma-separated patterns: 'issue.*,comment.created', '*'."
_FilterOption = Annotated[
    str | None, typer.Option("--filter", help='Filter document (JSON): \'{"data.current.priority": "high"}\'.')
]
_TemplateOption = Annotated[str | None, typer.Option("--template", help="Body template (Jinja2, sandboxed).")]
_TemplateFileOption = Annotated[
    Path | None, typer.Option("--template-file", help="Read the body template from this file.")
]
_ContentTypeOption = Annotated[
    str | None, typer.Option("--content-type", help="The template's content type (default application/json).")
]
_OrderingOption = Annotated[
    str | None, typer.Option("--ordering", help="none (parallel), strict (one at a time), entity (per entity).")
]
_OrderingKeyOption = Annotated[
    str | None, typer.Option("--ordering-key", help="With --ordering entity: the key's dotted path.")
]
_RedactOption = Annotated[
    str | None, typer.Option("--redact", help="Comma-separated field names or paths to mask: 'email,data.token'.")
]


@subscriptions_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name for people (unique).")],
    url: Annotated[str, typer.Option("--url", help="Where to deliver.")],
    event_types: Annotated[str, typer.Option("--event-types", help=_EventTypesHelp)],
    integration: Annotated[
        str, typer.Option("--integration", help=f"One of {', '.join(INTEGRATION_NAMES)}.")
    ] = "webhook",
    config: _ConfigOption = None,
    header: _HeaderOption = None,
    retry_schedule: _ScheduleOption = None,
    max_in_flight: Annotated[
        int | None, typer.Option("--max-in-flight", help="Concurrent deliveries (not an order: see --ordering).")
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    filter_: _FilterOption = None,
    template: _TemplateOption = None,
    template_file: _TemplateFileOption = None,
    content_type: _ContentTypeOption = None,
    rate_limit: Annotated[
        str | None, typer.Option("--rate-limit", help="At most so many deliveries: '10/s', '600/m'.")
    ] = None,
    ordering: _OrderingOption = None,
    ordering_key: _OrderingKeyOption = None,
    redact: _RedactOption = None,
    auto_recover: Annotated[
        bool, typer.Option("--auto-recover/--no-auto-recover", help="Re-enable by itself when the receiver is back.")
    ] = True,
) -> None:
    """Create a subscription; prints it as JSON with its secret (shown this once)."""
    from consumers import SubscriptionCreate

    new = SubscriptionCreate(
        name=name,
        url=url,
        event_types=_patterns(event_types),
        integration=integration,
        integration_config=_config(config) if config is not None else {},
        headers=_headers(header or []),
        active=not paused,
        retry_schedule=_schedule(retry_schedule) if retry_schedule is not None else None,
        max_in_flight=max_in_flight,
        filters=_filter(filter_) if filter_ is not None else None,
        template=_template(template, template_file),
        template_content_type=content_type,
        rate_limit=_rate_limit(rate_limit) if rate_limit is not None else None,
        ordering=ordering or "none",  # type: ignore[arg-type]  # checked by the service, the field named
        ordering_key=ordering_key,
        redact_fields=_fields(redact) if redact is not None else [],
        auto_recover=auto_recover,
    )

    async def body(engine: Engine) -> None:
        try:
            _show(await engine.service.create(new), with_secret=True)
        except EventValidationError as exc:
            raise option_named(exc) from None

    with_engine(body)


@subscriptions_app.command("update")
def update(
    subscription: SubscriptionArg,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="A new destination.")] = None,
    event_types: Annotated[str | None, typer.Option("--event-types", help=_EventTypesHelp)] = None,
    config: _ConfigOption = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", help="'Name: value', repeatable: replaces every custom header.")
    ] = None,
    no_headers: Annotated[bool, typer.Option("--no-headers", help="Remove every custom header.")] = False,
    retry_schedule: Annotated[
        str | None, typer.Option("--retry-schedule", help="Own delays (5s,1m,10m), or 'default' for the global ones.")
    ] = None,
    max_in_flight: Annotated[
        str | None, typer.Option("--max-in-flight", help="Concurrent deliveries, or 'default'.")
    ] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="Filter document (JSON), or 'none'.")] = None,
    template: Annotated[str | None, typer.Option("--template", help="Body template, or 'none'.")] = None,
    template_file: _TemplateFileOption = None,
    content_type: Annotated[
        str | None, typer.Option("--content-type", help="The template's content type, or 'default'.")
    ] = None,
    rate_limit: Annotated[str | None, typer.Option("--rate-limit", help="'10/s', '600/m', or 'none'.")] = None,
    ordering: _OrderingOption = None,
    ordering_key: Annotated[
        str | None, typer.Option("--ordering-key", help="The entity key's dotted path, or 'default'.")
    ] = None,
    redact: Annotated[
        str | None, typer.Option("--redact", help="Fields to mask (replaces the list), or 'none'.")
    ] = None,
    auto_recover: Annotated[
        bool | None, typer.Option("--auto-recover/--no-auto-recover", help="Re-enable by itself when back.")
    ] = None,
) -> None:
    """Change some fields (the others stay); a refused value is named and nothing is saved."""
    from consumers import SubscriptionPatch

    if header and no_headers:
        fail("--header and --no-headers cannot be used together", 2)
    patch = SubscriptionPatch()
    if name is not None:
        patch.name = name
    if url is not None:
        patch.url = url
    if event_types is not None:
        patch.event_types = _patterns(event_types)
    if config is not None:
        patch.integration_config = _config(config)
    if header or no_headers:
        patch.headers = _headers(header or [])
    if retry_schedule is not None:
        patch.retry_schedule = None if retry_schedule == "default" else _schedule(retry_schedule)
    if max_in_flight is not None:
        patch.max_in_flight = None if max_in_flight == "default" else _in_flight(max_in_flight)
    if filter_ is not None:
        patch.filters = None if filter_ == "none" else _filter(filter_)
    if template is not None or template_file is not None:
        patch.template = None if template == "none" else _template(template, template_file)
    if content_type is not None:
        patch.template_content_type = None if content_type == "default" else content_type
    if rate_limit is not None:
        patch.rate_limit = None if rate_limit == "none" else _rate_limit(rate_limit)
    if ordering is not None:
        patch.ordering = ordering  # type: ignore[assignment]  # checked by the service, the field named
    if ordering_key is not None:
        patch.ordering_key = None if ordering_key == "default" else ordering_key
    if redact is not None:
        patch.redact_fields = [] if redact == "none" else _fields(redact)
    if auto_recover is not None:
        patch.auto_recover = auto_recover
    if all(value is msgspec.UNSET for value in msgspec.structs.asdict(patch).values()):
        fail("nothing to change: give --name, --url, --event-types, --config, --header, --filter, --template …", 2)
    _apply(subscription, patch)


def _in_flight(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        fail(f"--max-in-flight: {text!r} is not a number (or 'default')", 2)


def _apply(subscription: str, patch: SubscriptionPatch) -> None:
    async def body(engine: Engine) -> None:
        sub = await _find(engine, subscription)
        try:
            _show(await engine.service.update(sub.id, patch))
        except EventValidationError as exc:
            raise option_named(exc) from None

    with_engine(body)


@subscriptions_app.command("list")
def list_(
    wide: WideOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print every field as JSON.")] = False,
) -> None:
    """List subscriptions."""

    async def body(engine: Engine) -> None:
        subs = await engine.subscriptions.list(limit=1000)
        if as_json:
            print_json([_view(s) for s in subs])
            return
        table = Table(title=f"{len(subs)} subscriptions", box=box.SIMPLE)
        table.add_column("id", no_wrap=True)
        # Names are what people type: whole on one line up to 30 characters, folded beyond.
        table.add_column("name", overflow="fold", min_width=min(30, max((len(s.name) for s in subs), default=4)))
        table.add_column("integration", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("event types", overflow="fold")
        table.add_column("url", overflow="fold")
        for s in subs:
            colour = {"active": "green", "paused": "yellow", "disabled": "red"}[s.status]
            table.add_row(
                shown_id(s.id, wide),
                s.name,
                s.integration,
                styled(s.status, colour),
                ", ".join(s.event_types),
                s.url,
            )
        console.print(table)

    with_engine(body)


@subscriptions_app.command("show")
def show(subscription: SubscriptionArg) -> None:
    """Show one subscription (its secret is not shown: rotate it to get a new one)."""

    async def body(engine: Engine) -> None:
        _show(await _find(engine, subscription))

    with_engine(body)


def _action(verb: str, doc: str, with_secret: bool = False) -> None:
    def command(subscription: SubscriptionArg) -> None:
        async def body(engine: Engine) -> None:
            method = {
                "pause": engine.service.pause,
                "resume": engine.service.resume,
                "rotate-secret": engine.service.rotate_secret,
            }[verb]
            _show(await method((await _find(engine, subscription)).id), with_secret=with_secret)

        with_engine(body)

    command.__doc__ = doc
    subscriptions_app.command(verb)(command)


_action("pause", "Pause delivery; events keep accumulating in the subscription's backlog.")
_action("resume", "Resume delivery (also of a disabled subscription), backlog first.")
_action(
    "rotate-secret",
    "New secret (printed once); the old one keeps signing beside it for WEBHOOK_SECRET_GRACE.",
    True,
)


@subscriptions_app.command("test")
def send_test(
    subscription: SubscriptionArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Send a signed test event now (not queued, not logged); exit 1 unless the receiver answers 2xx."""

    async def body(engine: Engine) -> None:
        from ..operations import send_test_event

        result = await send_test_event(engine, (await _find(engine, subscription)).id)
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

    with_engine(body)


@subscriptions_app.command("preview")
def preview(
    event_types: Annotated[str, typer.Option("--event-types", help=_EventTypesHelp)],
    integration: Annotated[
        str, typer.Option("--integration", help=f"One of {', '.join(INTEGRATION_NAMES)}.")
    ] = "webhook",
    url: Annotated[str, typer.Option("--url", help="The destination (some integrations shape it in).")] = "",
    config: _ConfigOption = None,
    filter_: _FilterOption = None,
    template: _TemplateOption = None,
    template_file: _TemplateFileOption = None,
    content_type: _ContentTypeOption = None,
    redact: _RedactOption = None,
    limit: Annotated[
        int, typer.Option("--limit", help="How many of the newest matching stored events (at most 1000).")
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer (bodies included) as JSON.")] = False,
) -> None:
    """Run a draft subscription on the newest stored events: which would be sent, with the exact bodies.

    Nothing is saved or sent. The draft is refused as a create would refuse it."""

    async def body(engine: Engine) -> None:
        from ..operations import SubscriptionDraft
        from ..operations import preview as run_preview

        draft = SubscriptionDraft(
            event_types=_patterns(event_types),
            integration=integration,
            integration_config=_config(config) if config is not None else {},
            url=url,
            filters=_filter(filter_) if filter_ is not None else None,
            template=_template(template, template_file),
            template_content_type=content_type,
            redact_fields=_fields(redact) if redact is not None else [],
            limit=limit,
        )
        try:
            result = await run_preview(engine, draft)
        except EventValidationError as exc:
            raise option_named(exc) from None
        if as_json:
            print_json(result)
            return
        console.print(
            f"{result.examined} stored events: {result.send} would be sent, {result.skip} skipped, "
            f"{result.fail} would fail",
            highlight=False,
        )
        for item in result.items:
            head = f"seq {item.stream_seq}  {item.event_type}  {item.event_id}  {item.outcome}"
            # Bodies and reasons are user data: shown exactly, controls made visible, never parsed as markup.
            if item.outcome == "send":
                console.print(plain(f"{head}  {item.content_type}"), highlight=False, soft_wrap=True)
                for line in (item.body or "").splitlines():
                    console.print(plain(line), highlight=False, soft_wrap=True)
            else:
                console.print(plain(f"{head}: {item.reason}"), highlight=False, soft_wrap=True)

    with_engine(body)


@subscriptions_app.command("recover")
def recover(
    subscription: SubscriptionArg,
    since: Annotated[str, typer.Option("--since", help="Failed since: 2h, 30m, 7d ago, or an RFC 3339 time.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Queue one more attempt of every delivery that failed since --since (the workers deliver them)."""
    start = when(since, "--since")
    assert start is not None

    async def body(engine: Engine) -> None:
        from ..operations import recover_failed

        sub = await _find(engine, subscription)
        result = await recover_failed(engine, sub.id, start)
        if as_json:
            print_json(result)
            return
        console.print(
            f"queued {result.queued} failed deliveries of subscription {sub.id} since "
            f"{result.since:%Y-%m-%d %H:%M:%S} UTC; the workers deliver them",
            highlight=False,
            soft_wrap=True,
        )
        if result.truncated:
            console.print(f"more than {result.max_deliveries} failed: run it again once these are delivered")

    with_engine(body)


@subscriptions_app.command("delete")
def delete(subscription: SubscriptionArg) -> None:
    """Delete a subscription, its backlog and its delivery log."""

    async def body(engine: Engine) -> None:
        sub = await _find(engine, subscription)
        await engine.service.delete(sub.id)
        console.print(f"deleted subscription {sub.id} ({safe(sub.name)})", highlight=False, soft_wrap=True)

    with_engine(body)
