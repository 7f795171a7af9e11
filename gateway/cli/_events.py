"""`turbohooks publish | events | tail | streams`."""

from __future__ import annotations

import base64
import difflib
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, get_args

import msgspec
import typer
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api as js_api
from nats.js.errors import NotFoundError as JsNotFoundError
from rich.markup import escape
from rich.table import Table

from publishers import EventPublisher
from streams import (
    ATTEMPTS_STREAM,
    DEAD_LETTER_STREAM,
    EXTERNAL_SOURCES,
    KNOWN_EVENT_TYPES,
    PLATFORM_SOURCE,
    SUBJECT_ROOT,
    TURBO_SOURCE,
    ActorType,
    EventValidationError,
    decode_event,
    parse_duration,
)

from ._common import PROVISION_HINT, console, err_console, fail, load_settings, nats_connection, print_json, run
from ._receive import receive
from ._safe import safe

__all__ = ("register",)

_SOURCES = (TURBO_SOURCE, *EXTERNAL_SOURCES, PLATFORM_SOURCE)


def _json_arg(value: str | None, option: str) -> Any:
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"{option}: cannot read {path}: {exc.strerror}", 2)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{option}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", 2)


def _context_arg(pairs: list[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--context: {pair!r} is not key=value (e.g. --context project_id=p-1)", 2)
        context[key.strip()] = value
    return context


def publish(
    event_type: Annotated[str, typer.Argument(help="An event type of the catalog, e.g. issue.created.")],
    entity_id: Annotated[str, typer.Option("--entity-id", help="Id of the entity the event is about.")],
    data: Annotated[
        str | None, typer.Option("--data", help="The entity's current state: JSON object, or @file.json.")
    ] = None,
    previous: Annotated[
        str | None, typer.Option("--previous", help="Its previous state (updates): JSON object or @file.")
    ] = None,
    changes: Annotated[str | None, typer.Option("--changes", help="Changed fields, comma-separated.")] = None,
    context: Annotated[
        list[str] | None, typer.Option("--context", help="key=value, repeatable: project_id, issue_id, …")
    ] = None,
    actor_type: Annotated[
        str, typer.Option("--actor-type", help=f"One of {', '.join(get_args(ActorType))}.")
    ] = "system",
    actor_name: Annotated[str, typer.Option("--actor-name", help="Who did it.")] = "turbohooks-cli",
    event_id: Annotated[str | None, typer.Option("--event-id", help="A UUID; re-using one publishes once.")] = None,
    causation: Annotated[
        str | None,
        typer.Option("--causation", help="The Turbohooks-Causation header of the delivery this event answers."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the acknowledgement as JSON.")] = False,
) -> None:
    """Publish one event and print its id and stream sequence."""
    settings = load_settings()
    if actor_type not in get_args(ActorType):
        fail(f"--actor-type (actor.type): {actor_type!r} is not one of {', '.join(get_args(ActorType))}", 2)
    current = _json_arg(data, "--data")
    event_data: dict[str, Any] = {"current": current if current is not None else {}}
    if previous is not None:
        event_data["previous"] = _json_arg(previous, "--previous")
    if changes:
        event_data["changes"] = [c.strip() for c in changes.split(",") if c.strip()]
    if current is not None and not isinstance(current, dict):
        fail(f"--data: must be a JSON object, got {type(current).__name__}", 2)

    async def main() -> None:
        async with (
            nats_connection(settings, role="publisher", streams="provision") as nc,
            EventPublisher(settings, nc=nc, name="cli") as publisher,
        ):
            ack = await publisher.emit(  # a refused event is exit 2, in run()
                event_type=event_type,
                entity_id=entity_id,
                data=event_data,
                context=_context_arg(context or []),
                actor={"type": actor_type, "name": actor_name},
                event_id=event_id,
                causation=causation,
            )
        if as_json:
            print_json(ack)
        else:
            note = " (duplicate: already stored)" if ack.duplicate else ""
            console.print(f"published {event_type} [bold]{ack.event_id}[/bold] as seq {ack.seq}{note}")

    run(main)


def events(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON.")] = False,
    source: Annotated[
        str | None,
        typer.Option("--source", help=f"Only the types of this source: {', '.join(_SOURCES)} (default: every source)."),
    ] = None,
) -> None:
    """List every event type of the catalog: Turbo's, those received from outside (GitHub), turbohooks' own."""
    if source is not None and source not in _SOURCES:
        fail(f"--source: {source!r} is not one of {', '.join(_SOURCES)}", 2)
    listed = [info for info in KNOWN_EVENT_TYPES.values() if source is None or info.source == source]
    if as_json:
        print_json(listed)
        return
    counts = Counter(info.source for info in listed)
    title = ", ".join(f"{n} {name}" for name, n in counts.items())
    table = Table(title=f"{len(listed)} event types ({title})", show_lines=False)
    table.add_column("event type", style="bold")
    table.add_column("source")
    table.add_column("subject")
    table.add_column("trigger")
    for info in listed:
        table.add_row(info.event_type, info.source, f"{SUBJECT_ROOT}.{info.event_type}", info.trigger)
    console.print(table)


def _subject_pattern(pattern: str) -> str:
    if pattern in (">", "*"):
        return f"{SUBJECT_ROOT}.>"
    if pattern.startswith(SUBJECT_ROOT + ".") or pattern == SUBJECT_ROOT:
        return pattern
    return f"{SUBJECT_ROOT}.{pattern}"


def _subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    p_tokens, s_tokens = pattern.split("."), subject.split(".")
    for index, part in enumerate(p_tokens):
        if part == ">":
            return index == len(p_tokens) - 1 and len(s_tokens) > index
        if index >= len(s_tokens) or part not in ("*", s_tokens[index]):
            return False
    return len(p_tokens) == len(s_tokens)


def _warn_if_nothing_matches(pattern: str, subject: str) -> None:
    """One line on stderr when ``subject`` can match no catalog event type, with the closest one."""
    if any(_subject_matches(subject, f"{SUBJECT_ROOT}.{event_type}") for event_type in KNOWN_EVENT_TYPES):
        return
    groups = sorted({event_type.rsplit(".", 1)[0] + ".>" for event_type in KNOWN_EVENT_TYPES})
    typed = subject.removeprefix(SUBJECT_ROOT + ".")
    close = difflib.get_close_matches(typed, [*KNOWN_EVENT_TYPES, *groups], n=1, cutoff=0.0)
    hint = f"; the closest is {close[0]!r}" if close else ""
    err_console.print(
        f"[yellow]warning:[/yellow] {escape(pattern)!r} matches no event type of the catalog{escape(hint)} "
        "(`turbohooks events` lists them); waiting anyway",
        highlight=False,
        soft_wrap=True,
    )


def tail(
    pattern: Annotated[str, typer.Argument(help="Subject pattern: 'turbo.issue.>', 'issue.*', '>'.")] = "turbo.>",
    since: Annotated[str | None, typer.Option("--since", help="Replay history from this long ago: 10m, 2h.")] = None,
    from_seq: Annotated[int | None, typer.Option("--from-seq", help="Replay from this stream sequence.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One event envelope per line, as JSON.")] = False,
    count: Annotated[int | None, typer.Option("--count", help="Stop after this many events.")] = None,
    no_follow: Annotated[bool, typer.Option("--no-follow", help="Stop once history is shown.")] = False,
) -> None:
    """Live view of events; replays history first with --since or --from-seq."""
    settings = load_settings()
    if since is not None and from_seq is not None:
        fail("--since and --from-seq cannot be used together", 2)
    config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.NEW)
    if since is not None:
        try:
            start = datetime.now(UTC) - timedelta(seconds=parse_duration(since))
        except ValueError as exc:
            fail(f"--since: {exc}", 2)
        config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_TIME, opt_start_time=start)
    elif from_seq is not None:
        if from_seq < 1:
            fail("--from-seq: sequences start at 1", 2)
        config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_seq)
    subject = _subject_pattern(pattern)
    _warn_if_nothing_matches(pattern, subject)

    async def main() -> None:
        async with nats_connection(settings, role="tail", streams="require") as nc:
            js = nc.jetstream()
            sub = await js.subscribe(subject, stream=settings.stream_name, ordered_consumer=True, config=config)
            shown = 0
            try:
                while count is None or shown < count:
                    try:
                        # History may already sit in the client's buffer, where
                        # the server's num_pending no longer counts it: with
                        # --no-follow, a quiet second also means "caught up".
                        msg = await sub.next_msg(timeout=1.0 if no_follow else None)
                    except NatsTimeoutError:
                        return
                    _show(msg.data, msg.metadata.sequence.stream, as_json, msg.subject)
                    shown += 1
                    if no_follow and msg.metadata.num_pending == 0:
                        return
            finally:
                await sub.unsubscribe()

    run(main)


def _show(payload: bytes, seq: int, as_json: bool, subject: str | None = None) -> None:
    """One message of the stream as one line, whatever it holds (never a traceback, never markup)."""
    try:
        event = decode_event(payload, subject=subject)
    except EventValidationError as exc:
        if as_json:
            # Still one JSON document per line: what it is, why not an event, and the start of its bytes.
            sys.stdout.write(json.dumps(_undecodable(payload, seq, subject, str(exc))) + "\n")
            sys.stdout.flush()
            return
        console.print(f"[dim]{seq:>8}[/dim] [red]undecodable event: {safe(exc)}[/red]", soft_wrap=True)
        return
    if as_json:
        line = payload if b"\n" not in payload else msgspec.json.encode(msgspec.json.decode(payload))
        sys.stdout.write(line.decode() + "\n")  # an event is valid JSON, so UTF-8
        sys.stdout.flush()
        return
    current = event.data.current
    title = current.get("title") or current.get("name") or ""
    actor = f"{event.actor.type}:{event.actor.name}"
    console.print(
        f"[dim]{seq:>8}[/dim] {event.timestamp:%Y-%m-%d %H:%M:%S} [bold]{safe(event.event_type):<30}[/bold] "
        f"{safe(f'{event.entity_id:<12}')} [cyan]{safe(actor)}[/cyan] {safe(title)}",
        highlight=False,
        soft_wrap=True,
    )


_SHOWN_RAW: Final = 256
"""Bytes of an undecodable message ``tail --json`` shows (base64)."""


def _undecodable(payload: bytes, seq: int, subject: str | None, reason: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "subject": subject,
        "undecodable": reason,
        "bytes": len(payload),
        "raw": base64.b64encode(payload[:_SHOWN_RAW]).decode(),
        "raw_truncated": len(payload) > _SHOWN_RAW,
    }


class _StreamRow(msgspec.Struct):
    name: str
    subjects: list[str]
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: int


class _ConsumerRow(msgspec.Struct):
    stream: str
    name: str
    filter_subjects: list[str]
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    delivered_stream_seq: int
    ack_floor_stream_seq: int


def streams(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Show stream and consumer state."""
    settings = load_settings()

    async def main() -> None:
        async with nats_connection(settings, role="tail") as nc:
            js = nc.jetstream()
            rows: list[_StreamRow] = []
            consumers: list[_ConsumerRow] = []
            for name in (settings.stream_name, ATTEMPTS_STREAM, DEAD_LETTER_STREAM):
                try:
                    info = await js.stream_info(name)
                except JsNotFoundError:  # not provisioned yet: shown as absent
                    continue
                rows.append(
                    _StreamRow(
                        name=name,
                        subjects=list(info.config.subjects or []),
                        messages=info.state.messages,
                        bytes=info.state.bytes,
                        first_seq=info.state.first_seq,
                        last_seq=info.state.last_seq,
                        consumers=info.state.consumer_count,
                    )
                )
                for ci in await js.consumers_info(name):
                    cfg = ci.config
                    consumers.append(
                        _ConsumerRow(
                            stream=name,
                            name=ci.name,
                            filter_subjects=list(
                                cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else [])
                            ),
                            num_pending=ci.num_pending or 0,
                            num_ack_pending=ci.num_ack_pending or 0,
                            num_redelivered=ci.num_redelivered or 0,
                            delivered_stream_seq=ci.delivered.stream_seq if ci.delivered else 0,
                            ack_floor_stream_seq=ci.ack_floor.stream_seq if ci.ack_floor else 0,
                        )
                    )
        if not rows:
            fail(f"turbohooks: no turbohooks stream on {settings.resolved_nats_url()}; {PROVISION_HINT}")
        if as_json:
            print_json({"streams": rows, "consumers": consumers})
            return
        table = Table(title="streams")
        for col in ("stream", "subjects", "messages", "bytes", "first seq", "last seq", "consumers"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r.name,
                ", ".join(r.subjects),
                str(r.messages),
                str(r.bytes),
                str(r.first_seq),
                str(r.last_seq),
                str(r.consumers),
            )
        console.print(table)
        ctable = Table(title="consumers")
        for col in ("stream", "consumer", "filter", "pending", "ack pending", "redelivered", "ack floor"):
            ctable.add_column(col)
        for c in consumers:
            ctable.add_row(
                c.stream,
                c.name,
                ", ".join(c.filter_subjects),
                str(c.num_pending),
                str(c.num_ack_pending),
                str(c.num_redelivered),
                str(c.ack_floor_stream_seq),
            )
        console.print(ctable)

    run(main)


def register(app: typer.Typer) -> None:
    """Add the event commands to ``app``."""
    app.command()(publish)
    app.command()(events)
    app.command()(tail)
    app.command()(streams)
    app.command()(receive)
