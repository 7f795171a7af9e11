"""What the product's parts share: the group's name, its event types, subscriptions and worker processes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

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
    "RULES_FILTER",
    "RULES_TEMPLATE",
    "RULES_TYPE",
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
RULES_TYPE: Final = "document.updated"
"""The saturation run with a filter and a template: a type no other subscription of the group takes."""

RULES_FILTER: Final[dict[str, Any]] = {
    "data.current.priority": {"$in": ["high", "urgent"]},
    "data.changes": {"$contains": "status"},
    "actor.type": {"$ne": "ai"},
    "context.project_id": {"$startsWith": "p-"},
    "data.previous.status": {"$exists": True},
}
"""The design's use cases in one filter: five clauses, each a different operator; every sample event matches."""

RULES_TEMPLATE: Final = (
    '{"text": {{ ("[" ~ context.project_id ~ "] " ~ data.current.title)|tojson }},'
    ' "status": "{{ data.current.status }}", "was": {{ data.previous.status|tojson }},'
    ' "priority": "{{ data.current.priority }}", "assignee": {{ data.current.assignee|tojson }},'
    ' "by": {{ actor.name|tojson }}, "labels": {{ data.current.labels|tojson }},'
    ' "changes": [{% for c in data.changes %}"{{ c }}"{% if not loop.last %},{% endif %}{% endfor %}],'
    ' "description": {{ data.current.description|tojson }}, "event": "{{ event_type }}:{{ entity_id }}",'
    ' "link": "https://turbo.example.com/projects/{{ context.project_id }}/issues/{{ entity_id }}",'
    ' "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": {{ ("*" ~ data.current.title'
    ' ~ "* moved from " ~ data.previous.status ~ " to " ~ data.current.status)|tojson }}}},'
    ' {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ ("by " ~ actor.name ~ " · priority "'
    ' ~ data.current.priority ~ " · " ~ data.current.labels|join(", "))|tojson }}}]}],'
    ' "id": "{{ event_id }}", "at": "{{ timestamp }}"}'
)
"""A payload template of the usual shape whose JSON output is about 1 KiB (the sample's description)."""


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
    engine: Engine,
    receiver: Receiver,
    sub: Subscription,
    count: int,
    limit: float,
    watched: Watched,
    *,
    event_type: str = "issue.updated",
) -> Burst:
    """Pause ``sub``, publish a backlog of ``count``, resume it: the deliveries, timed at the receiver.

    The backlog is there before the workers start on it, so the publisher's own rate (fsync-bound
    under ``sync_interval: always``) does not cap what is measured.
    """
    await engine.service.pause(sub.id)
    await asyncio.sleep(1.0)  # the workers stop their loops within about a second (registry watch)
    await receiver.settle()
    await preload(engine.publisher, event_type, count)
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
