"""EventPublisher: the ``emit()`` of the design document, on JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from streams import (
    Actor,
    Event,
    EventContext,
    EventData,
    NatsUnavailableError,
    PublishError,
    Settings,
    build_event,
    connect_nats,
    encode_event,
)
from streams.telemetry import publish_span, tracing_on

from ._changes import emit_change as _emit_change
from ._outbox import Outbox

__all__ = ("EventPublisher", "PublishAck")

_log = logging.getLogger("turbohooks.publisher")

MSG_ID_HEADER: Final = "Nats-Msg-Id"
_BATCH_WINDOW: Final = 1024
_FLUSH_BATCH: Final = 256


class PublishAck(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """JetStream's acknowledgement of one event."""

    event_id: uuid.UUID
    seq: int
    """The event's sequence number in the stream."""
    stream: str
    duplicate: bool = False
    """True when the stream already held this ``event_id`` (it was stored once)."""


class EventPublisher:
    """Publish Turbo events to JetStream.

    Use it as an async context manager, once per application (in a lifespan)::

        async with EventPublisher() as publisher:
            ack = await publisher.emit(event_type="issue.created", entity_id=issue.id,
                                       data={"current": issue_dict})

    Three paths:

    * :meth:`emit` returns once JetStream has stored the event (retrying through
      short outages up to ``TURBOHOOKS_PUBLISH_RETRY_HORIZON``);
    * :meth:`emit_many` pipelines many publishes for throughput;
    * :meth:`emit_background` never waits on the network: the event goes to a
      local durable outbox (SQLite) that a background task flushes in order,
      also after NATS was unreachable for a while.

    Every publish carries ``Nats-Msg-Id: <event_id>``, so a retried publish is
    stored once within the stream's duplicate window.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        nc: NATS | None = None,
        name: str = "publisher",
        outbox_path: Path | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.name = name
        self._nc = nc
        self._owns_nc = nc is None
        self._js: JetStreamContext | None = None
        self._outbox_path = outbox_path or self.settings.data_dir / f"outbox-{name}.sqlite3"
        self._outbox: Outbox | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._emptied = asyncio.Event()
        self._closing = False
        self._drain_timeout = drain_timeout
        self._connecting: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect (unless given a connection), open the outbox and start flushing it.

        A closed publisher may be opened again: it reconnects and flushes what
        its outbox kept. Opening an open publisher does nothing.
        """
        if self._flusher is not None:
            return
        if self._nc is None:
            try:
                self._nc = await connect_nats(self.settings, name=f"turbohooks-{self.name}", role="publisher")
            except NatsUnavailableError as exc:
                # An application starts while NATS is down: emit_background() keeps its promise (the
                # outbox holds the events); emit() raises PublishError until the connection is made.
                _log.warning("%s; events wait in the outbox until it answers", exc)
                self._connecting = asyncio.create_task(self._connect_later(), name=f"turbohooks-{self.name}-connect")
        if self._nc is not None:
            self._js = self._nc.jetstream(timeout=self.settings.publish_timeout)
        self._outbox = Outbox(self._outbox_path)
        self._closing = False
        self._wake.clear()
        self._emptied.clear()
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"turbohooks-{self.name}-outbox")
        if len(self._outbox):
            self._wake.set()

    async def _connect_later(self) -> None:
        while self._nc is None:
            await asyncio.sleep(1.0)
            with contextlib.suppress(NatsUnavailableError):
                self._nc = await connect_nats(self.settings, name=f"turbohooks-{self.name}", role="publisher")
        self._js = self._nc.jetstream(timeout=self.settings.publish_timeout)
        _log.info("outbox: connected to NATS; flushing %d events", self.outbox_pending)
        self._wake.set()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush the outbox for up to ``drain_timeout``, then stop; what is left stays on disk."""
        if self._outbox is not None and len(self._outbox):
            await self.flush(self._drain_timeout)
        self._closing = True
        self._wake.set()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        self._js = None
        if self._owns_nc and self._nc is not None:
            if not self._nc.is_closed:
                await self._nc.close()
            self._nc = None  # a reopened publisher connects again

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            if self._connecting is not None:
                raise PublishError(
                    "turbohooks: NATS is not reachable yet; emit_background() keeps events in the outbox meanwhile"
                )
            raise PublishError("turbohooks: EventPublisher is not open; use `async with EventPublisher() as p:`")
        return self._js

    # -- awaited path ------------------------------------------------------

    async def emit(
        self,
        *,
        event_type: str,
        entity_id: object,
        entity_type: str | None = None,
        data: EventData | Mapping[str, Any] | None = None,
        context: EventContext | Mapping[str, Any] | None = None,
        actor: Actor | Mapping[str, Any] | None = None,
        event_id: uuid.UUID | str | None = None,
        timestamp: datetime | None = None,
        causation_id: uuid.UUID | str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        causation: str | None = None,
    ) -> PublishAck:
        """Validate, publish, and return once JetStream acknowledged the event.

        With ``TURBOHOOKS_TRACING`` on, the publish is a span: a child of the
        caller's W3C ``traceparent`` (and ``tracestate``) when given, else a new
        trace, carried on in the message's headers to every delivery of the event
        (with tracing off both are unused).

        ``causation``: the ``Turbohooks-Causation`` header of the delivery this event
        answers (loop prevention: never delivered back to that subscription, and
        a chain of them stops at ``TURBOHOOKS_MAX_CAUSATION_DEPTH``).

        Raises :class:`~streams.EventValidationError` (nothing published) for bad
        input, :class:`~streams.PublishError` when JetStream did not acknowledge
        within the retry horizon.
        """
        event = build_event(
            event_type=event_type,
            entity_id=entity_id,
            entity_type=entity_type,
            data=data,
            context=context,
            actor=actor,
            event_id=event_id,
            timestamp=timestamp,
            causation_id=causation_id,
            causation=causation,
        )
        return await self.publish(event, traceparent=traceparent, tracestate=tracestate)

    async def publish(
        self, event: Event, *, traceparent: str | None = None, tracestate: str | None = None
    ) -> PublishAck:
        """Publish an already built event (see :func:`streams.build_event`); the trace context as :meth:`emit`."""
        event_id = str(event.event_id)
        if not tracing_on():
            return await self._publish_raw(event_id, event.subject, encode_event(event), {MSG_ID_HEADER: event_id})
        with publish_span(
            event.event_type, event_id, event.subject, traceparent=traceparent, tracestate=tracestate
        ) as trace:
            return await self._publish_raw(
                event_id, event.subject, encode_event(event), {MSG_ID_HEADER: event_id, **trace}
            )

    async def _publish_raw(self, event_id: str, subject: str, payload: bytes, headers: dict[str, str]) -> PublishAck:
        deadline = time.monotonic() + self.settings.publish_retry_horizon
        delay = 0.05
        while True:
            try:
                ack = await self.js.publish(subject, payload, headers=headers)
            except (NatsError, TimeoutError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise PublishError(
                        f"turbohooks: JetStream did not acknowledge event {event_id} on {subject} within "
                        f"{self.settings.publish_retry_horizon:g}s ({type(exc).__name__}: {exc})"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            return PublishAck(
                event_id=uuid.UUID(event_id), seq=ack.seq, stream=ack.stream, duplicate=bool(ack.duplicate)
            )

    async def emit_change(
        self,
        entity_type: str,
        entity_id: object,
        *,
        previous: Mapping[str, Any] | None,
        current: Mapping[str, Any],
        actor: Actor | Mapping[str, Any] | None = None,
        context: EventContext | Mapping[str, Any] | None = None,
        event_id: uuid.UUID | str | None = None,
        causation: str | None = None,
    ) -> list[PublishAck]:
        """Publish a change as ``<entity>.updated`` plus every event it implies, together.

        ``previous=None`` means the entity was just created. Derived events
        (``issue.status_changed``, ``issue.assigned``, ``comment.mention``, …)
        carry ``causation_id`` = the change's event id. Nothing changed: ``[]``.
        ``causation``: as for :meth:`emit` (every event of the change carries the chain).
        """
        return await _emit_change(
            self,
            entity_type,
            entity_id,
            previous=previous,
            current=current,
            actor=actor,
            context=context,
            event_id=event_id,
            causation=causation,
        )

    # -- pipelined path ----------------------------------------------------

    async def emit_many(self, events: Iterable[Event]) -> list[PublishAck]:
        """Publish many events with up to 2,048 in flight; acks in the order given.

        Build each with :func:`streams.build_event`. A publish that fails in the
        pipeline is retried on the awaited path, so every returned ack is real.
        """
        pending: list[tuple[Event, asyncio.Future[Any]]] = []
        acks: list[PublishAck] = []
        publish = self.js.publish_async
        for event in events:
            future = await publish(event.subject, encode_event(event), headers={MSG_ID_HEADER: str(event.event_id)})
            pending.append((event, future))
            if len(pending) >= 2 * _BATCH_WINDOW:
                # Settle the older window while the newer one is in flight:
                # waiting for a whole window before sending more emptied the
                # pipeline every 1,024 events (half the rate of publish_async).
                acks.extend(await self._settle(pending[:_BATCH_WINDOW]))
                del pending[:_BATCH_WINDOW]
        acks.extend(await self._settle(pending))
        return acks

    async def _settle(self, pending: list[tuple[Event, asyncio.Future[Any]]]) -> list[PublishAck]:
        if not pending:
            return []
        # The acks come back in order, and by now most of the window is done:
        # wait only for a future that is not (no task, no callback for the others).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.publish_timeout
        for _, future in pending:
            if not future.done() and (remaining := deadline - loop.time()) > 0:
                await asyncio.wait((future,), timeout=remaining)
        acks: list[PublishAck] = []
        for event, future in pending:
            if not future.done():
                future.cancel()
                acks.append(await self.publish(event))
                continue
            if (exc := future.exception()) is not None:
                if not isinstance(exc, NatsError | TimeoutError | OSError):
                    raise exc
                acks.append(await self.publish(event))
                continue
            result = future.result()
            acks.append(
                PublishAck(
                    event_id=event.event_id, seq=result.seq, stream=result.stream, duplicate=bool(result.duplicate)
                )
            )
        return acks

    # -- fire-and-forget path ---------------------------------------------

    def emit_background(
        self,
        *,
        event_type: str,
        entity_id: object,
        entity_type: str | None = None,
        data: EventData | Mapping[str, Any] | None = None,
        context: EventContext | Mapping[str, Any] | None = None,
        actor: Actor | Mapping[str, Any] | None = None,
        event_id: uuid.UUID | str | None = None,
        timestamp: datetime | None = None,
        causation_id: uuid.UUID | str | None = None,
        causation: str | None = None,
    ) -> uuid.UUID:
        """Validate, write to the local outbox, and return the event id at once.

        For request handlers: the only wait is a local SQLite insert. The event
        reaches JetStream in order, as soon as NATS can be reached.
        """
        event = build_event(
            event_type=event_type,
            entity_id=entity_id,
            entity_type=entity_type,
            data=data,
            context=context,
            actor=actor,
            event_id=event_id,
            timestamp=timestamp,
            causation_id=causation_id,
            causation=causation,
        )
        if self._outbox is None:
            raise PublishError("turbohooks: EventPublisher is not open; use `async with EventPublisher() as p:`")
        self._outbox.put(str(event.event_id), event.subject, encode_event(event))
        self._emptied.clear()
        self._wake.set()
        return event.event_id

    @property
    def outbox_pending(self) -> int:
        """Events accepted by :meth:`emit_background` and not yet acknowledged."""
        return len(self._outbox) if self._outbox is not None else 0

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the outbox is empty; False if ``timeout`` passed first."""
        if self.outbox_pending == 0:
            return True
        self._wake.set()
        try:
            await asyncio.wait_for(self._emptied.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _flush_loop(self) -> None:
        backoff = 0.05
        while not self._closing:
            assert self._outbox is not None
            rows = self._outbox.head(_FLUSH_BATCH)
            if rows and self._js is None:  # not connected yet: _connect_later() wakes this loop
                self._wake.clear()
                await self._wake.wait()
                continue
            if not rows:
                self._emptied.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            last_acked: int | None = None
            try:
                # One by one, awaited: the order of the outbox is the order in
                # the stream, even when a publish fails half-way.
                for row in rows:
                    await self.js.publish(row.subject, row.payload, headers={MSG_ID_HEADER: row.event_id})
                    last_acked = row.rowid
                backoff = 0.05
            except (NatsError, TimeoutError, OSError) as exc:
                _log.info("outbox: JetStream unavailable (%s); %d events wait", type(exc).__name__, len(self._outbox))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if last_acked is not None:
                    self._outbox.remove_through(last_acked)
