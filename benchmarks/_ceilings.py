"""Ceilings: what the machine and the libraries allow, with no turbohooks code on the path.

* the disk's fsync rate (what ``sync_interval: always`` pays per acknowledged write);
* raw nats-py JetStream publish, awaited one by one and pipelined with ``publish_async``;
* raw pull-consumer drain (fetch + ack) in batches of 1, 64 and 256;
* loopback HTTP: aiohttp's ``ClientSession`` and httpx's ``AsyncClient`` against
  the minimal receiver (another process) with 1, 16 and 64 requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import aiohttp
import httpx
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import NotFoundError

from streams import encode_event, provision

from ._processes import Children, bench_settings, connect, nats_server
from ._results import Results, Scale, percentile
from ._traffic import Receiver, sample_event

__all__ = ("IN_FLIGHT", "measure_publish", "measure_publish_async", "run")

GROUP: Final = "ceilings"
SUBJECT: Final = "turbo.issue.updated"
IN_FLIGHT: Final = (1, 16, 64)
BATCHES: Final = (1, 64, 256)


def _fsync_rate(directory: Path, seconds: float) -> float:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = b"x" * 1024
        count = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds and count < 200_000:
            os.write(fd, block)
            os.fsync(fd)
            count += 1
        return count / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


async def measure_publish(js: JetStreamContext, payload: bytes, count: int, limit: float) -> float:
    """Publishes per second, each awaited (the ack) before the next; at most ``count`` or ``limit`` seconds."""
    done = 0
    started = time.perf_counter()
    while done < count and time.perf_counter() - started < limit:
        await js.publish(SUBJECT, payload)
        done += 1
    return done / (time.perf_counter() - started)


async def measure_publish_async(
    js: JetStreamContext, payload: bytes, count: int, limit: float, *, msg_id: bool = False
) -> float:
    """Publishes per second with ``publish_async`` (nats-py's window), all acks awaited at the end."""
    futures: list[asyncio.Future[PubAck]] = []
    started = time.perf_counter()
    for _ in range(count):
        headers = {"Nats-Msg-Id": uuid.uuid4().hex} if msg_id else None
        futures.append(await js.publish_async(SUBJECT, payload, headers=headers))
        if time.perf_counter() - started > limit:
            break
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), limit + 10)
    elapsed = time.perf_counter() - started
    failed = sum(isinstance(r, BaseException) for r in results)
    return (len(futures) - failed) / elapsed


async def _drain(js: JetStreamContext, stream: str, batch: int, count: int, limit: float) -> float:
    durable = f"ceiling_drain_{batch}"
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, durable)
    psub = await js.pull_subscribe(
        SUBJECT,
        durable=durable,
        stream=stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
    )
    drained = 0
    started = time.perf_counter()
    while drained < count and time.perf_counter() - started < limit:
        msgs = await psub.fetch(min(batch, count - drained), timeout=2.0)
        for msg in msgs:
            await msg.ack()
        drained += len(msgs)
    elapsed = time.perf_counter() - started
    await psub.unsubscribe()
    await js.delete_consumer(stream, durable)
    return drained / elapsed


async def _http_aiohttp(url: str, body: bytes, in_flight: int, count: int, limit: float) -> tuple[float, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def post() -> None:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                await response.read()

        return await _closed_loop(post, in_flight, count, limit)


async def _http_httpx(url: str, body: bytes, in_flight: int, count: int, limit: float) -> tuple[float, float]:
    async with httpx.AsyncClient(timeout=30) as client:

        async def post() -> None:
            response = await client.post(url, content=body, headers={"Content-Type": "application/json"})
            response.raise_for_status()

        return await _closed_loop(post, in_flight, count, limit)


async def _closed_loop(
    post: Callable[[], Awaitable[None]], in_flight: int, count: int, limit: float, warmup: int = 20
) -> tuple[float, float]:
    """``in_flight`` loops POSTing back to back; (requests/s, p99 ms). Stops after ``count`` or ``limit`` s."""
    for _ in range(warmup):
        await post()
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + limit

    async def loop() -> None:
        while len(latencies) < count and time.perf_counter() < deadline:
            sent = time.perf_counter()
            await post()
            latencies.append((time.perf_counter() - sent) * 1000.0)

    await asyncio.wait_for(asyncio.gather(*(loop() for _ in range(in_flight))), limit + 35)
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 99)


async def run(results: Results, scale: Scale, workdir: Path, children: Children, receiver: Receiver) -> None:
    print("ceilings", flush=True)
    seconds = scale.pick(0.7, 3.0)
    fsync = await asyncio.to_thread(_fsync_rate, workdir, seconds)
    results.add("ceil.fsync", GROUP, "disk: 1 KiB write + fsync, one at a time", fsync, "/s")

    payload = encode_event(sample_event())
    async with nats_server(workdir / "nats", children) as server:
        settings = bench_settings(server.url, workdir / "data")
        nc = await connect(server.url, "ceilings")
        try:
            js = nc.jetstream(timeout=10)
            await provision(js, settings)
            rate = await measure_publish(js, payload, scale.pick(4000, 30_000), seconds)
            results.add("ceil.publish", GROUP, "JetStream publish, awaited one by one", rate, "msg/s", ref="ceil.fsync")
            count = scale.pick(4000, 60_000)
            rate = await measure_publish_async(js, payload, count, seconds * 3)
            results.add("ceil.publish_async", GROUP, "JetStream publish_async, pipelined", rate, "msg/s")
            rate = await measure_publish_async(js, payload, count, seconds * 3, msg_id=True)
            results.add(
                "ceil.publish_async_msgid",
                GROUP,
                "JetStream publish_async with a Nats-Msg-Id header (deduplication)",
                rate,
                "msg/s",
                ref="ceil.publish_async",
            )
            stored = (await js.stream_info(settings.stream_name)).state.messages
            for batch in BATCHES:
                rate = await _drain(js, settings.stream_name, batch, min(stored, scale.pick(6000, 50_000)), seconds * 2)
                results.add(
                    f"ceil.drain.{batch}",
                    GROUP,
                    f"pull-consumer drain (fetch {batch} + ack each)",
                    rate,
                    "msg/s",
                    ref="ceil.drain.256",
                )
        finally:
            await nc.close()

    body = payload
    series: dict[str, list[tuple[int, float, float]]] = {}
    clients = (("aiohttp", _http_aiohttp), ("httpx", _http_httpx))
    for name, measure in clients:
        for in_flight in IN_FLIGHT:
            rate, p99 = await measure(receiver.url, body, in_flight, scale.pick(6000, 60_000), scale.pick(0.6, 3.0))
            series.setdefault(name, []).append((in_flight, rate, p99))
            results.add(
                f"ceil.http.{name}.{in_flight}",
                GROUP,
                f"loopback HTTP, {name}, {in_flight} in flight",
                rate,
                "req/s",
                ref=f"ceil.http.aiohttp.{in_flight}",
                note=f"p99 {p99:,.1f} ms",
            )
    await receiver.reset()
    results.series["http"] = series
