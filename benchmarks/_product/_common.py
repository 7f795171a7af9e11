"""What the product's parts share: the group's name, its event types, subscriptions and worker processes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from nats.js import JetStreamContext

from consumers import Engine, Subscription, SubscriptionCreate, consumer_name
from publishers import EventPublisher
from streams import DEFAULT_CONFIG

from .._peers import Watched
from .._processes import TURBOHOOKS, Children, wait_until
from .._traffic import Burst, Receiver, measure_burst, sample_event

__all__ = (
    "BACKLOG_TYPE",
    "E2E_TYPES",
    "FANOUT_TYPE",
    "GROUP",
    "IDLE_TYPES",
    "default_sync_config",
    "drain_burst",
    "loops_running",
    "preload",
    "start_worker",
    "subscribe",
    "waiting",
)

GROUP: Final = "product"
E2E_TYPES: Final = ["issue.*"]
FANOUT_TYPE: Final = "comment.created"
BACKLOG_TYPE: Final = "milestone.progress_updated"
IDLE_TYPES: Final = ["project.*"]


async def subscribe(engine: Engine, name: str, url: str, types: list[str], *, active: bool = True) -> Subscription:
    return await engine.service.create(SubscriptionCreate(name=name, url=url, event_types=types, active=active))


async def waiting(js: JetStreamContext, stream: str, subs: Sequence[Subscription], at_least: int) -> int:
    """How many of ``subs`` have at least ``at_least`` pull requests waiting (their loops are running)."""
    bound = 0
    for start in range(0, len(subs), 100):
        chunk = subs[start : start + 100]
        infos = await asyncio.gather(
            *(js.consumer_info(stream, consumer_name(sub)) for sub in chunk), return_exceptions=True
        )
        bound += sum(1 for info in infos if not isinstance(info, BaseException) and (info.num_waiting or 0) >= at_least)
    return bound


async def loops_running(
    js: JetStreamContext, stream: str, subs: Sequence[Subscription], *, at_least: int = 1, timeout: float
) -> bool:
    async def ready() -> bool:
        return await waiting(js, stream, subs, at_least) == len(subs)

    return await wait_until(ready, timeout=timeout, interval=0.5)


async def preload(publisher: EventPublisher, event_type: str, count: int, chunk: int = 2000) -> None:
    for start in range(0, count, chunk):
        await publisher.emit_many([sample_event(event_type, n) for n in range(start, min(count, start + chunk))])


async def start_worker(children: Children, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await children.start(str(TURBOHOOKS), "worker", "--integration", "webhook", env=env)


async def drain_burst(
    engine: Engine, receiver: Receiver, sub: Subscription, count: int, limit: float, watched: Watched
) -> Burst:
    """Pause ``sub``, publish a backlog of ``count``, resume it: the deliveries, timed at the receiver.

    The backlog is there before the workers start on it, so the publisher's own rate (fsync-bound
    under ``sync_interval: always``) does not cap what is measured.
    """
    await engine.service.pause(sub.id)
    await asyncio.sleep(1.0)  # the workers stop their loops within about a second (registry watch)
    await receiver.settle()
    await preload(engine.publisher, "issue.updated", count)
    early = (await receiver.stats()).count

    async def resume() -> None:
        await engine.service.resume(sub.id)

    burst = await measure_burst(receiver, resume, count, limit=limit, watch=watched.pids)
    if early:
        burst.complete = False
    return burst


def default_sync_config(directory: Path) -> Path:
    """``nats/dev.conf`` without its ``sync_interval`` line: nats-server's default policy."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^\s*sync_interval\s*:.*$", "", text)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "default-sync.conf"
    path.write_text(text, encoding="utf-8")
    return path
