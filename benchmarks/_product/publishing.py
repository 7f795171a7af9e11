"""Publishing: raw nats-py against ``emit``/``emit_many``, and the cost of the disk-sync policy."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from nats.js import JetStreamContext

from consumers import open_engine
from publishers import EventPublisher
from streams import DEFAULT_CONFIG, encode_event

from .._ceilings import measure_publish, measure_publish_async
from .._processes import Children, bench_settings, nats_server
from .._results import Results, Scale
from .._traffic import sample_event, sample_fields
from ._common import GROUP, default_sync_config

__all__ = (
    "emit_many",
    "publishing",
    "sync_policy",
)


async def _emit_awaited(publisher: EventPublisher, count: int, limit: float) -> float:
    done = 0
    started = time.perf_counter()
    while done < count and time.perf_counter() - started < limit:
        await publisher.emit(**sample_fields("issue.updated", done))
        done += 1
    return done / (time.perf_counter() - started)


async def emit_many(publisher: EventPublisher, count: int) -> float:
    batch = [sample_event("issue.updated", n) for n in range(count)]
    started = time.perf_counter()
    acks = await publisher.emit_many(batch)
    elapsed = time.perf_counter() - started
    return len(acks) / elapsed


async def publishing(results: Results, scale: Scale, js: JetStreamContext, publisher: EventPublisher) -> None:
    """Raw nats-py against the product's paths, alternated on one server, medians of the repeats."""
    payload = encode_event(sample_event())
    limit = scale.pick(0.7, 3.0)
    count = scale.pick(3000, 15_000)
    raw, awaited, raw_async, many = [], [], [], []
    for _ in range(scale.pick(1, 3)):
        raw.append(await measure_publish(js, payload, count, limit))
        awaited.append(await _emit_awaited(publisher, count, limit))
        raw_async.append(await measure_publish_async(js, payload, count, limit * 4))
        many.append(await emit_many(publisher, count))
    results.add(
        "product.raw_publish", GROUP, "raw nats-py publish, awaited (same server)", statistics.median(raw), "/s"
    )
    results.add(
        "product.emit",
        GROUP,
        "emit() awaited, one by one (build + validate + publish)",
        statistics.median(awaited),
        "/s",
        ref="product.raw_publish",
    )
    results.add(
        "product.raw_publish_async",
        GROUP,
        "raw nats-py publish_async, pipelined (same server)",
        statistics.median(raw_async),
        "/s",
    )
    results.add(
        "product.emit_many",
        GROUP,
        "emit_many() of built events",
        statistics.median(many),
        "/s",
        ref="product.raw_publish_async",
    )
    results.target(
        "batch emit path ≥ 70 % of raw publish_async (nats/dev.conf: both fsync-bound)",
        "product.emit_many",
        ">=",
        0.70,
        ref="product.raw_publish_async",
    )


async def sync_policy(results: Results, scale: Scale, workdir: Path, children: Children) -> None:
    limit = scale.pick(0.7, 3.0)
    payload = encode_event(sample_event())
    # Counts for about the same time under each policy: the default one is ~10x faster.
    configs = (
        ("always", DEFAULT_CONFIG, scale.pick(2000, 12_000)),
        ("default", default_sync_config(workdir), scale.pick(12_000, 100_000)),
    )
    series: dict[str, dict[str, float]] = {}
    for name, config, count in configs:
        async with nats_server(workdir / name, children, config) as server:
            settings = bench_settings(server.url, workdir / f"{name}-data")
            async with open_engine(settings, name=f"sync-{name}") as engine:
                js = engine.js
                awaited = await measure_publish(js, payload, count, limit)
                pipelined: list[float] = []
                many: list[float] = []
                for _ in range(scale.pick(1, 3)):
                    pipelined.append(await measure_publish_async(js, payload, count, limit * 4))
                    many.append(await emit_many(engine.publisher, count))
                pipelined_rate, many_rate = statistics.median(pipelined), statistics.median(many)
        series[name] = {"publish": awaited, "publish_async": pipelined_rate, "emit_many": many_rate}
        if name == "default":
            results.target(
                "batch emit path ≥ 70 % of raw publish_async (server's default sync: the Python cost)",
                "sync.default.emit_many",
                ">=",
                0.70,
                ref="sync.default.publish_async",
            )
        label = (
            "sync_interval: always (nats/dev.conf)" if name == "always" else "nats-server default sync (every 2 min)"
        )
        ref = None if name == "always" else "sync.always"
        results.add(
            f"sync.{name}.publish",
            GROUP,
            f"{label}: publish awaited",
            awaited,
            "/s",
            ref=f"{ref}.publish" if ref else None,
        )
        results.add(
            f"sync.{name}.publish_async",
            GROUP,
            f"{label}: publish_async",
            pipelined_rate,
            "/s",
            ref=f"{ref}.publish_async" if ref else None,
        )
        results.add(
            f"sync.{name}.emit_many",
            GROUP,
            f"{label}: emit_many",
            many_rate,
            "/s",
            ref=f"{ref}.emit_many" if ref else None,
        )
    results.series["sync"] = series
