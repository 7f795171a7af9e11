"""Load: a backlog drained, one event fanned out to 100 subscriptions, the cost of idle subscriptions."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable

import psutil

from consumers import Engine, Subscription

from .._processes import cpu_and_rss, peak_rss, wait_until
from .._results import Results, Scale
from .._traffic import Receiver, measure_burst, sample_event, sample_fields
from ._common import BACKLOG_TYPE, FANOUT_TYPE, GROUP, IDLE_TYPES, loops_running, preload, subscribe, waiting

__all__ = (
    "backlog",
    "fanout",
    "idle",
)


async def backlog(results: Results, scale: Scale, engine: Engine, receiver: Receiver, worker_pid: int) -> None:
    count = scale.pick(4000, 100_000)
    sub = await subscribe(engine, "backlog", receiver.url, [BACKLOG_TYPE], active=False)
    started = time.monotonic()
    await preload(engine.publisher, BACKLOG_TYPE, count, chunk=5000)
    published = time.monotonic() - started
    await receiver.settle()
    rss_before = psutil.Process(worker_pid).memory_info().rss / 1e6
    async with peak_rss(worker_pid) as samples:

        async def resume() -> None:
            await engine.service.resume(sub.id)

        burst = await measure_burst(receiver, resume, count, limit=scale.pick(20.0, 120.0))
    peak = max((mb for _, mb in samples), default=math.nan)
    state = "all delivered" if burst.complete else f"{burst.delivered:,} of {count:,} delivered"
    label = f"backlog of {count:,} events"
    results.add(
        "product.backlog.rate",
        GROUP,
        f"{label}: drain rate",
        burst.rate,
        "/s",
        ref="product.e2e.rate",
        note=f"{state}; published in {published:.1f}s",
    )
    results.add(
        "product.backlog.rss", GROUP, f"{label}: worker peak RSS", peak, "MB", note=f"{rss_before:.0f} MB before"
    )
    scale_note = "" if count >= 100_000 else f"measured with {count:,} events"
    results.target(
        "100,000-event backlog drained with RSS < 300 MB", "product.backlog.rss", "<", 300, scale_note=scale_note
    )
    results.series["backlog"] = {"arrivals": burst.arrivals, "rss": samples, "count": count}
    await receiver.settle()


async def fanout(results: Results, scale: Scale, engine: Engine, receiver: Receiver) -> list[Subscription]:
    fanout = 100
    started = time.monotonic()
    subs = [await subscribe(engine, f"fanout-{n}", receiver.url, [FANOUT_TYPE]) for n in range(fanout)]
    created = fanout / (time.monotonic() - started)
    results.add("product.create_rate", GROUP, "subscriptions created (service.create)", created, "/s")
    if not await loops_running(engine.js, engine.settings.stream_name, subs, timeout=60):
        results.notes.append("fan-out: the worker did not run all 100 loops within 60 s")
    await receiver.settle()
    # One event to 100 subscriptions: how long until the last copy arrives.
    spans = []
    for n in range(3):
        await receiver.reset()
        await engine.publisher.emit(**sample_fields(FANOUT_TYPE, n))

        async def all_copies() -> bool:
            return (await receiver.stats()).count >= fanout

        await wait_until(all_copies, timeout=10)
        _, latencies = await receiver.samples()
        if len(latencies) >= fanout:
            spans.append(max(latencies))
    results.add(
        "product.fanout.last",
        GROUP,
        "one event to 100 subscriptions: last copy received after",
        statistics.median(spans) if spans else None,
        "ms",
        note="median of 3",
    )
    events = scale.pick(30, 100)

    async def burst() -> None:
        await engine.publisher.emit_many([sample_event(FANOUT_TYPE, n) for n in range(events)])

    result = await measure_burst(receiver, burst, events, limit=scale.pick(10.0, 30.0), expected=events * fanout)
    results.add(
        "product.fanout.rate",
        GROUP,
        f"{events} events to 100 subscriptions: deliveries/s",
        result.rate,
        "/s",
        ref="product.e2e.rate",
        note="all delivered" if result.complete else f"{result.delivered:,} of {events * fanout:,}",
    )
    await receiver.settle()
    return subs


async def idle(
    results: Results,
    scale: Scale,
    engine: Engine,
    receiver: Receiver,
    existing: int,
    worker_pid: int,
    server_pid: int | None,
) -> None:
    wanted = scale.pick(200, 1000)
    more = max(0, wanted - existing)
    subs = [await subscribe(engine, f"idle-{n}", receiver.url, IDLE_TYPES) for n in range(more)]
    total = existing + len(subs)
    if not await loops_running(engine.js, engine.settings.stream_name, subs, timeout=scale.pick(30, 120)):
        bound = await waiting(engine.js, engine.settings.stream_name, subs, 1)
        results.notes.append(f"idle: only {bound + existing} of {total} loops were running when measured")
    await asyncio.sleep(scale.pick(1.0, 6.0))  # past the start-up of the last loops
    seconds = scale.pick(3.0, 10.0)
    measures: list[Awaitable[tuple[float, float]]] = [cpu_and_rss(worker_pid, seconds)]
    if server_pid is not None:
        measures.append(cpu_and_rss(server_pid, seconds))
    measured = await asyncio.gather(*measures)
    cpu, rss = measured[0]
    label = f"{total:,} idle subscriptions"
    note = f"over {seconds:.0f}s"
    results.add("product.idle.cpu", GROUP, f"{label}: worker CPU", cpu * 100, "% of a core", note=note)
    results.add("product.idle.rss", GROUP, f"{label}: worker RSS", rss, "MB")
    if len(measured) > 1:
        results.add("product.idle.nats_cpu", GROUP, f"{label}: nats-server CPU", measured[1][0] * 100, "% of a core")
    scale_note = "" if total >= 1000 else f"measured with {total:,} subscriptions"
    results.target(
        "1,000 idle subscriptions: worker < 5 % of a core", "product.idle.cpu", "<", 5.0, scale_note=scale_note
    )
    results.target("1,000 idle subscriptions: worker RSS < 150 MB", "product.idle.rss", "<", 150, scale_note=scale_note)
