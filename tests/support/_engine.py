"""The delivery engine as the tests run it: workers and a recorder as tasks, and the ordering sentinel."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from consumers import DeliveryDetail, Engine, Recorder, Subscription, SubscriptionCreate, Worker, delivery_id_for
from streams import Settings, connect_nats

from ._receiver import Receiver
from ._waiting import wait_for

__all__ = ("Running", "Sentinel", "running_engine", "sentinel", "settled")


@dataclass
class Running:
    """Workers and a recorder running as tasks of the test."""

    engine: Engine
    workers: list[Worker]
    recorder: Recorder
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]

    @property
    def worker(self) -> Worker:
        """The first (often the only) worker."""
        return self.workers[0]

    async def subscribe(self, **fields: object) -> Subscription:
        """Create a subscription and wait until every worker runs its loop."""
        sub = await self.engine.service.create(SubscriptionCreate(**fields))  # type: ignore[arg-type]
        await wait_for(lambda: all(sub.id in w.running for w in self.workers), what="workers to pick it up")
        return sub


async def settled(
    running: Running, sub_id: uuid.UUID, event_id: uuid.UUID, *, status: str | None = None, attempts: int = 1
) -> DeliveryDetail:
    """The delivery of ``event_id`` to ``sub_id`` once recorded as ``status`` (default: settled, success or failed,
    after at least ``attempts`` attempts)."""
    delivery_id = delivery_id_for(sub_id, event_id)
    seen: list[DeliveryDetail] = []

    async def done() -> bool:
        try:
            detail = await running.engine.deliveries.get(delivery_id)
        except KeyError:
            return False
        seen[:] = [detail]
        if status is not None:
            return detail.status == status
        return detail.status in ("success", "failed") and detail.attempts >= attempts

    await wait_for(done, what=f"delivery {delivery_id} to be {status or 'settled'}")
    return seen[0]


@contextlib.asynccontextmanager
async def running_engine(engine: Engine, copies: int = 1, settings: Settings | None = None) -> AsyncIterator[Running]:
    """Run ``copies`` workers (each with its own NATS connection) and one recorder, with ``settings`` if given."""
    settings = settings or engine.settings
    stop = asyncio.Event()
    connections = [await connect_nats(settings, name=f"test-worker-{i}") for i in range(copies)]
    workers = [Worker(settings, nc) for nc in connections]
    recorder = Recorder(settings, engine.nc, engine.deliveries, engine.service)
    tasks = [asyncio.create_task(w.run(stop)) for w in workers] + [asyncio.create_task(recorder.run(stop))]
    await wait_for(lambda: all(w.ready.is_set() for w in workers), what="workers to read the registry")
    try:
        yield Running(engine, workers, recorder, stop, tasks)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for nc in connections:
            with contextlib.suppress(Exception):
                await nc.close()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


_SENTINEL_TYPE = "tag.removed"


@dataclass
class Sentinel:
    """A subscription that sees what the one under test would, plus an event it alone receives.

    Instead of "sleep, then assert nothing arrived": publish the events that must
    not arrive, then :meth:`passed`, which publishes the sentinel event and waits
    until it is delivered. Its subscription delivers in stream order (one at a
    time), so by then the same worker has been through every earlier event.
    """

    running: Running
    receiver: Receiver
    path: str
    entity_id: str

    async def passed(self) -> None:
        """Publish the sentinel event; return once it was delivered (every earlier event was handled)."""
        ack = await self.running.engine.publisher.emit(event_type=_SENTINEL_TYPE, entity_id=self.entity_id)
        await wait_for(
            lambda: str(ack.event_id) in {r.event_id for r in self.receiver.at(self.path)}, what="the sentinel event"
        )


async def sentinel(running: Running, receiver: Receiver, unique: str, event_types: list[str]) -> Sentinel:
    """A :class:`Sentinel` following ``event_types`` (those of the subscription under test; not ``tag.removed``)."""
    path = f"/sentinel-{unique}"
    await running.subscribe(
        name=f"sentinel-{unique}",
        url=receiver.endpoint(path),
        event_types=[*event_types, _SENTINEL_TYPE],
        max_in_flight=1,
    )
    return Sentinel(running, receiver, path, unique)
