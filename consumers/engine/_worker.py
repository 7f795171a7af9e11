"""The worker: pull loops of every active subscription of some integration kinds.

Each subscription is a durable pull consumer (:class:`~consumers.engine._loop.SubscriptionLoop`);
its loop keeps up to ``max_in_flight`` deliveries running (a sliding window: a
slow request holds its own slot, never the batch). A delivery's fate is decided
explicitly: ack on success, nak with a delay to retry (JetStream redelivers;
nothing sleeps here), dead letter + ack when attempts run out or the receiver
refuses for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection
from typing import Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from integrations import INTEGRATIONS, TransportContext
from streams import (
    NATS_ERRORS,
    REDELIVER_STREAM,
    REDELIVER_SUBJECT_ROOT,
    USER_AGENT,
    EventValidationError,
    Settings,
    decode_event,
)

from .._messages import Subscription
from ..rules import Skip, compile_rules
from ..subscriptions._consumer import ack_wait
from ..subscriptions._registry import SubscriptionRegistry
from ._deliverer import Deliverer
from ._http import DeliveryClient
from ._loop import SubscriptionLoop
from ._redeliver import request_decoder

__all__ = ("Worker",)

_log = logging.getLogger("turbohooks.worker")

_IDLE_FETCH: Final = 5.0


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
        self.deliverer = Deliverer(settings, self.js, self.client, max_payload=lambda: nc.max_payload)
        self._loops: dict[uuid.UUID, SubscriptionLoop] = {}
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
                pending = set(tasks)
                while pending:
                    # A cancel can be lost inside nats-py's KV watcher (seen 1 in ~200 on 3.11: the task
                    # stays "cancelling" on a fresh queue getter); asking again ends it.
                    for task in pending:
                        task.cancel()
                    _, pending = await asyncio.wait(pending, timeout=0.5)
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
        try:
            if loop is None:
                loop = SubscriptionLoop(self, sub)
                self._loops[sub.id] = loop
                loop.start()
            elif (loop.sub.max_in_flight, loop.sub.event_types) != (sub.max_in_flight, sub.event_types):
                fresh = SubscriptionLoop(self, sub)
                await loop.stop()
                self._loops[sub.id] = fresh
                fresh.start()
            else:
                loop.update(sub)
        except msgspec.ValidationError as exc:
            # Saved configs were validated; one that no longer parses (a downgrade) is not delivered.
            _log.error("subscription %s: its integration_config does not load (%s); not delivering it", sub.id, exc)

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
            await asyncio.gather(*(self._redeliver_guarded(msg) for msg in msgs))

    async def _redeliver_guarded(self, msg: Msg) -> None:
        try:
            await self._redeliver(msg)
        except Exception:  # noqa: BLE001  one request must not end the loop of its kind; it comes again after ack_wait
            _log.exception("a redelivery request crashed; it will be asked again")

    async def _redeliver(self, msg: Msg) -> None:
        try:
            # Any NATS client may publish here: a request nested too deeply for the
            # parser (RecursionError, the event being kept raw) is refused like one malformed.
            request = request_decoder.decode(msg.data)
            event = decode_event(request.event)
        except (msgspec.ValidationError, msgspec.DecodeError, EventValidationError, RecursionError) as exc:
            _log.error("undecodable redelivery request: %s", exc)
            with contextlib.suppress(*NATS_ERRORS):
                await msg.term()
            return
        sub = self._known.get(request.subscription_id)
        if sub is None or sub.integration not in self.kinds or sub.status != "active":
            # Deleted, paused or disabled meanwhile (queueing refuses those):
            # a manual retry or a replay is not kept for later.
            _log.info("dropping a %s of subscription %s: it is not active", request.trigger, request.subscription_id)
            await msg.ack()
            return
        loop = self._loops.get(sub.id)
        try:
            attempted = await self.deliverer.attempt(
                sub,
                loop.rules
                if loop is not None
                else compile_rules(sub, max_causation_depth=self.settings.max_causation_depth),
                event,
                bytes(request.event),
                attempt=1,
                trigger=request.trigger,
                stream_seq=request.stream_seq,
                policy=None,
            )
        except NATS_ERRORS as exc:
            # Its record could not be written ahead: not sent; unacknowledged, so it comes back.
            _log.warning("could not start a redelivery (%s)", exc)
            return
        try:
            if not isinstance(attempted, Skip):
                await self.deliverer.record(attempted.record)
            await msg.ack()
        except NATS_ERRORS as exc:
            _log.warning("could not settle a redelivery (%s)", exc)
