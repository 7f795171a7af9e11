"""Peers: what a user would write instead of turbohooks, measured in the same run.

(a) the design's current approach: a background task per request POSTs with httpx,
    no broker (no durability: the latency floor);
(b) a plain nats-py pull consumer, POST with httpx, ack;
(c) the same with FastStream's NATS JetStream subscriber;
(d) a plain nats-py pull consumer with aiohttp: the reference the product must reach 85 % of.

Each runs as its own process (see :mod:`benchmarks._peer_apps`); the events of
(b), (c) and (d) are published by the driver with ``EventPublisher``, as for the product.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from nats.js.errors import NotFoundError

from publishers import EventPublisher
from streams import Event, connect_nats, provision

from ._processes import PYTHON, Children, bench_settings, nats_server
from ._results import Results, Scale, percentile
from ._traffic import Burst, LatencyRun, Receiver, measure_burst, measure_paced, sample_event

__all__ = ("PEERS", "Peer", "publish_burst", "record_stored", "run")

GROUP: Final = "peers"
RATE: Final = 500.0


@dataclass(frozen=True)
class Peer:
    key: str
    kind: str
    label: str


PEERS: Final = (
    Peer(
        "peer.background_httpx", "background", "(a) no broker: background task + httpx (the design's current approach)"
    ),
    Peer("peer.nats_httpx", "nats-httpx", "(b) plain nats-py pull consumer + httpx"),
    Peer("peer.faststream_httpx", "faststream", "(c) FastStream NATS JetStream subscriber + httpx"),
    Peer("peer.nats_aiohttp", "nats-aiohttp", "(d) plain nats-py pull consumer + aiohttp"),
)


def events(count: int, event_type: str = "issue.updated") -> list[Event]:
    return [sample_event(event_type, n) for n in range(count)]


def publish_burst(publisher: EventPublisher, batch: list[Event]) -> asyncio.Task[None]:
    """Publish ``batch`` with ``emit_many`` in a task (the caller measures the deliveries)."""

    async def go() -> None:
        await publisher.emit_many(batch)

    return asyncio.create_task(go())


class Firing:
    """``fire(i)``: publish one fresh event in a task (so that pacing never waits on an ack).

    It also times each publish from the event's ``timestamp`` to JetStream's
    acknowledgement (stored, and fsynced under ``nats/dev.conf``): no consumer
    can deliver an event before that, so its tail is the floor of the
    end-to-end tail in the same run.
    """

    def __init__(self, publisher: EventPublisher, event_type: str = "issue.updated") -> None:
        self.publisher = publisher
        self.event_type = event_type
        self.tasks: set[asyncio.Task[object]] = set()
        self.stored_ms: list[float] = []

    def __call__(self, n: int) -> None:
        task: asyncio.Task[object] = asyncio.create_task(self._publish(sample_event(self.event_type, n)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _publish(self, event: Event) -> None:
        await self.publisher.publish(event)
        self.stored_ms.append((datetime.now(UTC) - event.timestamp).total_seconds() * 1000.0)

    async def settle(self) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=10)


def record_stored(results: Results, key: str, group: str, label: str, fire: Firing) -> None:
    """The p99 of publish → JetStream's ack in a latency run: the end-to-end floor of that run."""
    values = fire.stored_ms
    if not values:
        return
    results.add(
        f"{key}.stored_p99",
        group,
        f"{label}: p99 publish → stored (JetStream ack) at {RATE:,.0f} events/s",
        percentile(values, 99),
        "ms",
        note=f"p50 {percentile(values, 50):,.2f} / p95 {percentile(values, 95):,.2f} ms; no delivery can come before",
    )


def record_latency(results: Results, key: str, group: str, label: str, run: LatencyRun) -> None:
    delivered = run.delivered / run.sent if run.sent else 0.0
    note = (
        f"offered {run.offered:,.0f}/s, {delivered:.0%} delivered in time, p50 {run.p50:,.2f} / p95 {run.p95:,.2f} ms"
    )
    results.add(f"{key}.p99", group, f"{label}: p99 at {RATE:,.0f} events/s", _finite(run.p99), "ms", note=note)
    results.series.setdefault("latency", {})[key] = {
        "label": label,
        "latencies": run.latencies,
        "sent": run.sent,
        "p50": _finite(run.p50),
        "p95": _finite(run.p95),
        "p99": _finite(run.p99),
    }


def record_burst(
    results: Results,
    key: str,
    group: str,
    label: str,
    burst: Burst,
    *,
    ref: str | None,
    consumer: str = "consumer",
    cpu_ref: str | None = "peer.nats_aiohttp.cpu_us",
) -> None:
    """The rate, and the CPU the consumer process(es) spent per delivery while it ran."""
    state = "all delivered" if burst.complete else f"{burst.delivered:,} of {burst.sent:,} within {burst.elapsed:.0f}s"
    results.add(f"{key}.rate", group, f"{label}: deliveries/s at saturation", burst.rate, "/s", ref=ref, note=state)
    shares = {name: share for name in sorted(burst.cpu) if (share := burst.cpu_share(name)) is not None}
    consumers = [name for name in burst.cpu if name.startswith(consumer)]
    if consumers and burst.cpu_window[0] > 0:
        per_delivery = sum(burst.cpu[name] for name in consumers) / burst.cpu_window[0] * 1e6
        cores = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
        results.add(
            f"{key}.cpu_us",
            group,
            f"{label}: CPU per delivery ({consumer} process)",
            per_delivery,
            "µs",
            ref=cpu_ref if cpu_ref != f"{key}.cpu_us" else None,
            note=f"share of a core over {burst.cpu_window[1]:.1f}s: {cores}",
        )
    results.series.setdefault("bursts", {})[key] = {
        "label": label,
        "rate": burst.rate,
        "arrivals": burst.arrivals,
        "cpu_share": shares,
    }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else value


Command = Callable[[str, float], Awaitable[None]]


class Watched:
    """Processes whose CPU a burst measures, by name (a pid of None is left out)."""

    def __init__(self, pids: dict[str, int | None] | None = None) -> None:
        self.known: dict[str, int | None] = dict(pids or {})

    def pids(self) -> dict[str, int]:
        return {name: pid for name, pid in self.known.items() if pid is not None}


@contextlib.asynccontextmanager
async def _background_app(children: Children, receiver: Receiver) -> AsyncIterator[tuple[Command, Watched]]:
    """A fresh process of peer (a), warmed up; yields ``command(text, timeout)`` (waits for its ``DONE``)."""
    process = await children.start(
        PYTHON,
        "-m",
        "benchmarks._peer_apps",
        "background",
        "--target",
        receiver.url,
        "--max-seconds",
        "600",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def command(text: str, timeout: float) -> None:
        stdin.write(text.encode() + b"\n")
        await stdin.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdout.readline(), timeout)

    try:
        line = await asyncio.wait_for(stdout.readline(), 30)
        if line.strip() != b"READY":
            raise RuntimeError(f"benchmarks: the background peer did not start ({line!r})")
        await command("burst 20", 10)  # open the pool's connections
        await receiver.settle()
        yield command, Watched({"consumer": process.pid, "receiver": receiver.process.pid})
    finally:
        await children.stop(process)
        await receiver.settle()


async def _background(
    results: Results, scale: Scale, peer: Peer, children: Children, receiver: Receiver, limit: float
) -> None:
    """Peer (a): no broker, so no backlog: N requests as fast as they come, then a fixed rate (fresh processes)."""
    count = scale.pick(1500, 10_000)
    async with _background_app(children, receiver) as (command, app):

        async def burst_of_requests() -> None:
            await command(f"burst {count}", limit)

        burst = await measure_burst(receiver, burst_of_requests, count, limit=limit, watch=app.pids)
    record_burst(results, peer.key, GROUP, peer.label, burst, ref="peer.nats_aiohttp.rate")
    sent = int(RATE * scale.pick(1.5, 10.0))
    async with _background_app(children, receiver) as (command, _):
        await receiver.reset()
        await command(f"rate {RATE} {sent}", sent / RATE + 10)
        _, latencies = await receiver.samples()
    kept = [v for v in latencies if not math.isnan(v)]
    record_latency(results, peer.key, GROUP, peer.label, LatencyRun(RATE, sent, len(kept), kept))


async def run(results: Results, scale: Scale, workdir: Path, children: Children, receiver: Receiver) -> None:
    print("peers", flush=True)
    limit = scale.pick(2.5, 20.0)
    async with nats_server(workdir / "nats", children) as server:
        settings = bench_settings(server.url, workdir / "data")
        nc = await connect_nats(settings, name="bench-peers")
        try:
            await provision(nc.jetstream(), settings)
            js = nc.jetstream()
            async with EventPublisher(settings, nc=nc, name="peers") as publisher:
                for peer in PEERS:
                    if peer.kind == "background":
                        await _background(results, scale, peer, children, receiver, limit)
                        continue
                    durable = f"peer_{peer.kind.replace('-', '_')}"
                    # A backlog first, so that the publisher's own (fsync-bound) rate does not cap the consumer.
                    await js.purge_stream(settings.stream_name)
                    count = scale.pick(2500, 20_000)
                    await publisher.emit_many(events(count))
                    started: list[asyncio.subprocess.Process] = []
                    watched = Watched({"nats-server": server.pid, "receiver": receiver.process.pid})

                    async def start(
                        kind: str = peer.kind,
                        durable: str = durable,
                        started: list[asyncio.subprocess.Process] = started,
                        watched: Watched = watched,
                    ) -> None:
                        started.append(
                            await children.start(
                                PYTHON,
                                "-m",
                                "benchmarks._peer_apps",
                                kind,
                                "--nats",
                                server.url,
                                "--target",
                                receiver.url,
                                "--durable",
                                durable,
                                "--max-seconds",
                                "600",
                            )
                        )
                        watched.known["consumer"] = started[-1].pid

                    try:
                        burst = await measure_burst(receiver, start, count, limit=limit, watch=watched.pids)
                        ref = None if peer.key == "peer.nats_aiohttp" else "peer.nats_aiohttp.rate"
                        record_burst(results, peer.key, GROUP, peer.label, burst, ref=ref)
                        # What is left of the backlog would be delivered during the latency run: drop it.
                        await js.purge_stream(settings.stream_name)
                        await receiver.settle(timeout=limit)
                        fire = Firing(publisher)
                        sent = int(RATE * scale.pick(1.5, 10.0))
                        latency = await measure_paced(receiver, fire, RATE, sent, drain=5.0)
                        await fire.settle()
                        record_latency(results, peer.key, GROUP, peer.label, latency)
                        record_stored(results, peer.key, GROUP, peer.label, fire)
                    finally:
                        for process in started:
                            await children.stop(process)
                        with contextlib.suppress(NotFoundError):
                            await js.delete_consumer(settings.stream_name, durable)
                        await receiver.settle()
        finally:
            await nc.close()
