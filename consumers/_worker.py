"""The worker: pull loops of every active subscription of some integration kinds.

Each subscription is a durable pull consumer; its loop keeps up to
``max_in_flight`` deliveries running (a sliding window: a slow request holds
its own slot, never the batch). A delivery's fate is decided explicitly: ack on
success, nak with a delay to retry (JetStream redelivers; nothing sleeps here),
dead letter + ack when attempts run out or the receiver refuses for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from integrations import INTEGRATIONS, Integration, OutgoingRequest, Transport, TransportContext
from streams import (
    DEAD_LETTER_SUBJECT_ROOT,
    NATS_ERRORS,
    REDELIVER_STREAM,
    REDELIVER_SUBJECT_ROOT,
    USER_AGENT,
    Event,
    EventValidationError,
    Settings,
    decode_event,
)

from ._batcher import AttemptBatcher
from ._consumer import ack_wait, consumer_name, ensure_consumer
from ._http import DeliveryClient, HttpResult
from ._messages import AttemptRecord, AttemptTrigger, DeadLetter, Subscription, delivery_id_for
from ._pull import ContinuousPull
from ._registry import SubscriptionRegistry
from ._retry import RetryPolicy, classify
from ._signing import build_headers

__all__ = ("EVENT_SOURCE", "USER_AGENT", "RedeliveryRequest", "Worker", "delivery_headers", "redeliver_subject")

_log = logging.getLogger("turbohooks.worker")

EVENT_SOURCE: Final = "/turbo"
"""``ce-source`` of deliveries."""
_IDLE_FETCH: Final = 5.0
_GONE_HOLD: Final = 30.0

_encoder: Final = msgspec.json.Encoder()


class RedeliveryRequest(msgspec.Struct, kw_only=True):
    """Deliver one stored event to one subscription once more (manual retry, replay)."""

    subscription_id: uuid.UUID
    trigger: AttemptTrigger
    event: msgspec.Raw
    stream_seq: int | None = None


_request_decoder: Final = msgspec.json.Decoder(RedeliveryRequest)


def redeliver_subject(integration: str, subscription_id: uuid.UUID) -> str:
    """Where a manual retry or replay of one subscription is queued for its workers."""
    return f"{REDELIVER_SUBJECT_ROOT}.{integration}.{subscription_id.hex}"


def delivery_headers(
    sub: Subscription,
    integration: Integration,
    event: Event,
    request: OutgoingRequest,
    *,
    source: str = EVENT_SOURCE,
    now: datetime | None = None,
    delivery_id: uuid.UUID | None = None,
) -> dict[str, str]:
    """Every header of one delivery of ``event`` to ``sub``: identity, signatures, custom headers.

    Signed with the current secret and, during a rotation's grace period, the
    previous one. Used by the workers and by the gateway's test send alike.
    """
    if not integration.signs:
        return {**sub.headers, **request.headers, "User-Agent": USER_AGENT}
    moment = now or datetime.now(UTC)
    secrets = [sub.secret]
    if sub.previous_secret and sub.previous_secret_expires_at and sub.previous_secret_expires_at > moment:
        secrets.append(sub.previous_secret)
    return build_headers(
        msg_id=delivery_id or delivery_id_for(sub.id, event.event_id),
        timestamp=int(moment.timestamp()),
        body=request.body,
        secrets=secrets,
        event_type=event.event_type,
        event_id=event.event_id,
        event_time=event.timestamp,
        source=source,
        user_agent=USER_AGENT,
        extra={**sub.headers, **request.headers},
    )


def _position(msg: Msg) -> tuple[int, int]:
    """(delivery count, stream sequence) of a JetStream message, from its reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``;
    nats-py's ``Msg.metadata`` parses every field (and a datetime) into
    dataclasses, a few percent of the worker's CPU for the two it needs. Other
    layouts (domains, accounts) go through it.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS":
        return int(tokens[4]), int(tokens[5])
    meta = msg.metadata
    return meta.num_delivered, meta.sequence.stream


class _Outcome(msgspec.Struct, kw_only=True):
    record: AttemptRecord
    delay: float | None = None
    dead: bool = False
    gone: bool = False


class _Deliverer:
    """Turns one event into one attempt against one subscription; shared by live and redelivery paths."""

    def __init__(self, settings: Settings, js: JetStreamContext, client: DeliveryClient) -> None:
        self.settings = settings
        self.js = js
        self.client = client
        self.attempts = 0
        """HTTP attempts made by this process (for metrics, and to see copies share the work)."""
        self.batcher = AttemptBatcher(js)
        self.transports: dict[str, Transport] = {}
        """Custom transports of integrations that have one, opened by the worker."""

    async def attempt(
        self,
        sub: Subscription,
        integration: Integration,
        event: Event,
        raw: bytes,
        *,
        attempt: int,
        trigger: AttemptTrigger,
        stream_seq: int | None,
        policy: RetryPolicy | None,
    ) -> _Outcome | None:
        request = integration.render(event, raw, sub.url, sub.integration_config)
        if request is None:
            return None
        delivery_id = delivery_id_for(sub.id, event.event_id)
        started = datetime.now(UTC)
        headers = delivery_headers(sub, integration, event, request, now=started, delivery_id=delivery_id)
        self.attempts += 1
        transport = self.transports.get(integration.name)
        if transport is not None:
            sent = await transport.send(request, event, sub.url, sub.integration_config)
            result = HttpResult(
                status=sent.status,
                headers=sent.headers,
                body=sent.body,
                latency_ms=sent.latency_ms,
                error=sent.error,
                error_kind=sent.error_kind,
            )
            request = OutgoingRequest(
                url=sent.request_url or request.url, body=sent.request_body or request.body, headers=request.headers
            )
            headers = sent.request_headers or headers
        else:
            result = await self.client.post(request.url, request.body, headers)
        finished = datetime.now(UTC)
        classification = classify(result.status, result.error_kind)
        record = AttemptRecord(
            attempt_id=uuid.uuid4(),
            delivery_id=delivery_id,
            subscription_id=sub.id,
            event_id=event.event_id,
            event_type=event.event_type,
            attempt=attempt,
            outcome="success",
            trigger=trigger,
            stream_seq=stream_seq,
            request_url=request.url,
            request_headers=headers,
            payload=request.body,
            response_code=result.status,
            response_headers=result.headers,
            response_body=result.body,
            error=result.error,
            latency_ms=result.latency_ms,
            started_at=started,
            finished_at=finished,
        )
        if classification == "success":
            return _Outcome(record=record)
        if classification == "gone":
            record.outcome = "failed"
            record.disable_subscription = f"the receiver answered 410 Gone at {finished:%Y-%m-%d %H:%M:%SZ}"
            return _Outcome(record=record, gone=True)
        delay = None
        if policy is not None:
            retry_after = integration.retry_after(result.status, result.headers, result.body)
            delay = policy.next_delay(attempt, classification=classification, retry_after=retry_after)
        if delay is None:
            record.outcome = "failed"
            return _Outcome(record=record, dead=trigger == "live")
        record.outcome = "retrying"
        record.next_attempt_at = finished + timedelta(seconds=delay)
        return _Outcome(record=record, delay=delay)

    async def record(self, record: AttemptRecord) -> None:
        """Publish the attempt for the recorder; awaited, so the log is written before the ack."""
        await self.batcher.record(record)

    async def dead_letter(self, sub: Subscription, raw: bytes, stream_seq: int, record: AttemptRecord) -> None:
        """Copy an event whose attempts ran out to the dead-letter stream, its last attempt attached."""
        letter = DeadLetter(
            subscription_id=sub.id,
            delivery_id=record.delivery_id,
            event=msgspec.Raw(raw),
            stream_seq=stream_seq,
            last_attempt=record,
            dead_at=datetime.now(UTC),
        )
        await self.js.publish(
            f"{DEAD_LETTER_SUBJECT_ROOT}.{sub.id.hex}",
            _encoder.encode(letter),
            headers={"Nats-Msg-Id": f"{record.delivery_id}:{stream_seq}"},
        )


class _SubscriptionLoop:
    """The deliveries of one subscription: a continuous pull with a window of ``max_in_flight``."""

    def __init__(self, worker: Worker, sub: Subscription) -> None:
        self.worker = worker
        self.sub = sub
        self.integration = INTEGRATIONS[sub.integration]
        self.policy = RetryPolicy.from_settings(worker.settings, sub.retry_schedule)
        self._limit = sub.max_in_flight or worker.settings.webhook_max_in_flight
        self._pull: ContinuousPull | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._gone_until = 0.0
        self._settling = asyncio.Semaphore(4 * self._limit)
        self._settle_tasks: set[asyncio.Task[None]] = set()

    def update(self, sub: Subscription) -> None:
        """Take a changed subscription (URL, secret, headers) for the next deliveries."""
        self.sub = sub
        self.policy = RetryPolicy.from_settings(self.worker.settings, sub.retry_schedule)

    def start(self) -> None:
        self._task = asyncio.create_task(self._start(), name=f"turbohooks-sub-{self.sub.id.hex[:8]}")

    async def stop(self) -> None:
        """Stop pulling; let in-flight deliveries finish (and ack) within the attempt timeout."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pull is not None:
            await self._pull.stop(timeout=self.worker.settings.webhook_timeout + 1)
        if self._settle_tasks:
            await asyncio.wait(set(self._settle_tasks), timeout=self.worker.settings.publish_timeout + 1)

    async def _start(self) -> None:
        settings = self.worker.settings
        while not self._stopping:
            try:
                await ensure_consumer(self.worker.js, settings, self.sub)
                pull = ContinuousPull(
                    self.worker.nc, settings.stream_name, consumer_name(self.sub), self._deliver, window=self._limit
                )
                await pull.start()
            except NATS_ERRORS as exc:
                _log.warning("subscription %s: cannot start its consumer (%s); retrying", self.sub.id, exc)
                await asyncio.sleep(1.0)
                continue
            self._pull = pull
            return

    async def _deliver(self, msg: Msg) -> None:
        sub = self.sub
        deliverer = self.worker.deliverer
        delivered, stream_seq = _position(msg)
        if time.monotonic() < self._gone_until:
            with contextlib.suppress(*NATS_ERRORS):
                await msg.nak()
            return
        try:
            event = decode_event(msg.data)
        except EventValidationError as exc:
            _log.error("subscription %s: undecodable event at seq %s: %s", sub.id, stream_seq, exc)
            await msg.term()
            return
        outcome = await deliverer.attempt(
            sub,
            self.integration,
            event,
            msg.data,
            attempt=delivered,
            trigger="live",
            stream_seq=stream_seq,
            policy=self.policy,
        )
        if outcome is None:
            await msg.ack()
            return
        if outcome.delay is None and not outcome.dead and not outcome.gone:
            # The common case, delivered: the attempts batch that stores the
            # record acknowledges the event, and the HTTP slot is free now.
            deliverer.batcher.record_and_ack(outcome.record, msg)
            return
        if outcome.gone:
            # 410 Gone: the recorder disables the subscription; until its status
            # arrives, do not hammer the receiver (held before the slot frees).
            self._gone_until = time.monotonic() + _GONE_HOLD
            if self._pull is not None:
                self._pull.hold(_GONE_HOLD)
        # The HTTP slot is free once the answer is in: recording (an fsynced
        # write shared by a batch) and settling the event go on in the
        # background, bounded, so the window keeps receivers busy.
        await self._settling.acquire()
        task = asyncio.create_task(self._settle(msg, stream_seq, sub, outcome))
        self._settle_tasks.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settle_tasks.discard(task)
        self._settling.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("subscription %s: settling crashed: %r", self.sub.id, exc, exc_info=exc)

    async def _settle(self, msg: Msg, stream_seq: int, sub: Subscription, outcome: _Outcome) -> None:
        deliverer = self.worker.deliverer
        try:
            await deliverer.record(outcome.record)
            if outcome.gone:
                # The event stays, first in line: a disabled subscription keeps its backlog.
                await msg.nak()
            elif outcome.delay is not None:
                await msg.nak(delay=outcome.delay)
            else:
                if outcome.dead:
                    await deliverer.dead_letter(sub, msg.data, stream_seq, outcome.record)
                await msg.ack()
        except NATS_ERRORS as exc:
            # Unacknowledged: JetStream redelivers after ack_wait, so nothing is lost.
            _log.warning("subscription %s: could not settle seq %s (%s)", sub.id, stream_seq, exc)


class Worker:
    """Runs the subscriptions of some integration kinds (all when ``integrations`` is None).

    Several copies may run at once: the consumers are shared, so they split the
    work. Subscription changes arrive through the KV registry.
    """

    def __init__(self, settings: Settings, nc: NATS, *, integrations: Collection[str] | None = None) -> None:
        unknown = set(integrations or ()) - set(INTEGRATIONS)
        if unknown:
            raise EventValidationError(
                "integration", f"unknown {', '.join(sorted(unknown))}; choose from {', '.join(sorted(INTEGRATIONS))}"
            )
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream(timeout=settings.publish_timeout)
        self.kinds = frozenset(integrations) if integrations else frozenset(INTEGRATIONS)
        self.client = DeliveryClient(
            timeout=settings.webhook_timeout,
            response_body_cap=settings.response_body_cap,
            user_agent=USER_AGENT,
            guard_addresses=True,
            allowed_hosts=settings.webhook_allowed_hosts,
        )
        self.deliverer = _Deliverer(settings, self.js, self.client)
        self._loops: dict[uuid.UUID, _SubscriptionLoop] = {}
        self._known: dict[uuid.UUID, Subscription] = {}
        self.ready = asyncio.Event()
        """Set once the initial subscriptions are running."""

    def _wanted(self, sub: Subscription) -> bool:
        return sub.integration in self.kinds and sub.status == "active" and self.settings.webhook_enabled

    @property
    def running(self) -> frozenset[uuid.UUID]:
        """Ids of the subscriptions whose loops run here."""
        return frozenset(self._loops)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully."""
        async with self.client, contextlib.AsyncExitStack() as stack:
            context = TransportContext(settings=self.settings, js=self.js, timeout=self.settings.webhook_timeout)
            for kind in sorted(self.kinds):
                factory = INTEGRATIONS[kind].transport
                if factory is not None:
                    self.deliverer.transports[kind] = await stack.enter_async_context(factory(context))
            registry = await SubscriptionRegistry.open(self.js, self.settings)
            watch = asyncio.create_task(self._watch(registry))
            tasks = [watch] + [asyncio.create_task(self._redeliveries(kind)) for kind in sorted(self.kinds)]
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await asyncio.gather(*(loop.stop() for loop in self._loops.values()))
                self._loops.clear()
                await self.deliverer.batcher.close()

    async def _watch(self, registry: SubscriptionRegistry) -> None:
        while True:
            try:
                async for change in registry.watch():
                    await self._apply(change.subscription, change.deleted)
                    if change.initial_done:
                        self.ready.set()
            except NATS_ERRORS as exc:
                _log.warning("registry watch interrupted (%s); watching again", exc)
                await asyncio.sleep(0.5)

    async def _apply(self, sub: Subscription | None, deleted: uuid.UUID | None) -> None:
        if deleted is not None:
            self._known.pop(deleted, None)
            loop = self._loops.pop(deleted, None)
            if loop is not None:
                await loop.stop()
            return
        if sub is None:
            return
        self._known[sub.id] = sub
        loop = self._loops.get(sub.id)
        if not self._wanted(sub):
            if loop is not None:
                del self._loops[sub.id]
                await loop.stop()
            return
        if loop is None:
            loop = _SubscriptionLoop(self, sub)
            self._loops[sub.id] = loop
            loop.start()
        elif (loop.sub.max_in_flight, loop.sub.event_types) != (sub.max_in_flight, sub.event_types):
            await loop.stop()
            self._loops[sub.id] = fresh = _SubscriptionLoop(self, sub)
            fresh.start()
        else:
            loop.update(sub)

    async def _redeliveries(self, kind: str) -> None:
        """Manual retries and replays queued for one integration kind: one attempt each.

        One durable consumer per kind on a work-queue stream: every worker
        running that kind shares it, and each request is delivered once.
        """
        durable = f"redeliver_{kind}"
        while True:
            try:
                await self.js.add_consumer(
                    REDELIVER_STREAM,
                    js_api.ConsumerConfig(
                        durable_name=durable,
                        filter_subject=f"{REDELIVER_SUBJECT_ROOT}.{kind}.>",
                        ack_policy=js_api.AckPolicy.EXPLICIT,
                        ack_wait=ack_wait(self.settings),
                    ),
                )
                psub = await self.js.pull_subscribe_bind(durable=durable, stream=REDELIVER_STREAM)
                break
            except NATS_ERRORS as exc:
                _log.warning("redelivery consumer %s unavailable (%s); retrying", durable, exc)
                await asyncio.sleep(1.0)
        while True:
            try:
                msgs = await psub.fetch(16, timeout=_IDLE_FETCH)
            except NATS_ERRORS:
                continue
            await asyncio.gather(*(self._redeliver(msg) for msg in msgs))

    async def _redeliver(self, msg: Msg) -> None:
        try:
            request = _request_decoder.decode(msg.data)
            event = decode_event(request.event)
        except (msgspec.ValidationError, msgspec.DecodeError, EventValidationError) as exc:
            _log.error("undecodable redelivery request: %s", exc)
            await msg.term()
            return
        sub = self._known.get(request.subscription_id)
        if sub is None or sub.integration not in self.kinds or sub.status != "active":
            # Deleted, paused or disabled meanwhile (queueing refuses those):
            # a manual retry or a replay is not kept for later.
            _log.info("dropping a %s of subscription %s: it is not active", request.trigger, request.subscription_id)
            await msg.ack()
            return
        outcome = await self.deliverer.attempt(
            sub,
            INTEGRATIONS[sub.integration],
            event,
            bytes(request.event),
            attempt=1,
            trigger=request.trigger,
            stream_seq=request.stream_seq,
            policy=None,
        )
        try:
            if outcome is not None:
                await self.deliverer.record(outcome.record)
            await msg.ack()
        except NATS_ERRORS as exc:
            _log.warning("could not settle a redelivery (%s)", exc)
