"""End to end: one worker then two, at saturation and at 500 events/s.

Also the same saturation run through a subscription with a five-clause filter and a
~1 KiB payload template, against the one without.

Also the recorder's lag behind the deliveries, the worker's profile (``--profile``) and
what the latency is made of (full mode).
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from nats.js import JetStreamContext

from consumers import RECORDER_CONSUMER, Engine, Subscription, SubscriptionCreate, open_engine
from consumers.rules import compile_template
from streams import ATTEMPTS_STREAM, DEFAULT_CONFIG

from .. import _profile
from .._peers import RATE, Firing, Watched, record_burst, record_latency, record_stored
from .._processes import TURBOHOOKS, Children, bench_settings, child_env, nats_server, wait_until
from .._results import Results, Scale
from .._traffic import Receiver, measure_paced, sample_event
from ._common import (
    E2E_TYPES,
    GROUP,
    RULES_FILTER,
    RULES_TEMPLATE,
    RULES_TYPE,
    default_sync_config,
    drain_burst,
    loops_running,
    preload,
    start_worker,
    subscribe,
)

__all__ = (
    "end_to_end",
    "latency_diagnosis",
)


async def end_to_end(
    results: Results,
    scale: Scale,
    engine: Engine,
    children: Children,
    receiver: Receiver,
    env: dict[str, str],
    worker: asyncio.subprocess.Process,
    watched: Watched,
    profile_dir: Path | None,
) -> Subscription:
    settings = engine.settings
    js = engine.js
    sub = await subscribe(engine, "e2e", receiver.url, E2E_TYPES)

    async def probe() -> None:
        await engine.publisher.publish(sample_event("issue.created"))

    if not await receiver.await_ready(probe, timeout=60):
        raise RuntimeError("benchmarks: the worker never delivered a probe within 60 s")
    limit = scale.pick(5.0, 30.0)
    count = scale.pick(3000, 30_000)

    burst = await drain_burst(engine, receiver, sub, count, limit, watched)
    record_burst(
        results,
        "product.e2e",
        GROUP,
        "turbohooks, 1 worker (signed + recorded)",
        burst,
        ref="peer.nats_aiohttp.rate",
        consumer="worker",
    )
    signed = (await receiver.stats()).signed
    if signed < burst.delivered:
        results.notes.append(f"only {signed} of {burst.delivered} deliveries carried webhook-signature")
    results.target("end-to-end ≥ 4,000 deliveries/s (1 worker)", "product.e2e.rate", ">=", 4000)
    results.target(
        "end-to-end ≥ 85 % of plain nats-py + aiohttp", "product.e2e.rate", ">=", 0.85, ref="peer.nats_aiohttp.rate"
    )
    results.target("end-to-end ≥ 15× plain nats-py + httpx", "product.e2e.rate", ">=", 15, ref="peer.nats_httpx.rate")
    results.target(
        "end-to-end ≥ 15× FastStream + httpx", "product.e2e.rate", ">=", 15, ref="peer.faststream_httpx.rate"
    )
    results.add(
        "product.e2e.vs_drain",
        GROUP,
        "end-to-end rate against the raw pull drain (fetch 64 + ack)",
        burst.rate,
        "/s",
        ref="ceil.drain.64",
    )
    await _recorder_lag(results, js)
    await _rules_burst(results, engine, receiver, count, limit, watched)

    # Latency at a fixed 500 events/s, measured at the receiver from the event's timestamp.
    await receiver.settle()
    fire = Firing(engine.publisher)
    sent = int(RATE * scale.pick(1.5, 10.0))
    latency = await measure_paced(receiver, fire, RATE, sent, drain=5.0)
    await fire.settle()
    record_latency(results, "product.e2e", GROUP, "turbohooks, 1 worker (signed + recorded)", latency)
    record_stored(results, "product.e2e", GROUP, "turbohooks, 1 worker (signed + recorded)", fire)
    results.target(f"p99 ≤ 3 ms from publish to receipt at {RATE:,.0f} events/s", "product.e2e.p99", "<=", 3.0)

    if profile_dir is not None and worker.pid is not None:
        await _profiled_burst(results, scale, engine, receiver, sub, worker.pid, profile_dir)

    # Two worker copies share the subscription's consumer.
    second = await start_worker(children, env)
    try:
        if not await loops_running(js, settings.stream_name, [sub], at_least=2, timeout=30):
            results.notes.append("two workers: the second never bound the consumer within 30 s; not measured")
        else:
            both = Watched({**watched.known, "worker 2": second.pid})
            two = await drain_burst(engine, receiver, sub, count, limit, both)
            record_burst(
                results,
                "product.e2e2",
                GROUP,
                "turbohooks, 2 workers",
                two,
                ref="product.e2e.rate",
                consumer="worker",
                cpu_ref="product.e2e.cpu_us",
            )
            results.target("two worker copies ≥ 1.6× one", "product.e2e2.rate", ">=", 1.6, ref="product.e2e.rate")
    finally:
        await children.stop(second)
    await receiver.settle()
    return sub


async def _rules_burst(
    results: Results, engine: Engine, receiver: Receiver, count: int, limit: float, watched: Watched
) -> None:
    """The saturation run again, through a subscription with a five-clause filter and a ~1 KiB template.

    Its events are of a type the ``e2e`` subscription does not take (nor any other of the
    group), so that subscription builds no backlog meanwhile; the events are the same sample,
    and every one of them matches the filter. The subscription is deleted afterwards, so the
    runs that follow see the same subscriptions as before.
    """
    rendered = compile_template(RULES_TEMPLATE, None, "webhook").render(sample_event(RULES_TYPE))
    size = len(rendered) if isinstance(rendered, bytes) else 0
    label = f"turbohooks, 1 worker, five-clause filter + {size / 1024:.1f} KiB template"
    sub = await engine.service.create(
        SubscriptionCreate(
            name="e2e-rules",
            url=receiver.url,
            event_types=[RULES_TYPE],
            filters=dict(RULES_FILTER),
            template=RULES_TEMPLATE,
        )
    )
    try:
        if not await loops_running(engine.js, engine.settings.stream_name, [sub], timeout=30):
            results.notes.append("filter + template: the worker never bound the consumer within 30 s; not measured")
            return
        burst = await drain_burst(engine, receiver, sub, count, limit, watched, event_type=RULES_TYPE)
        _, latencies = await receiver.samples()
        # The receiver reads the event's timestamp from the body: the template's body carries none.
        templated = sum(1 for latency in latencies if math.isnan(latency))
        record_burst(
            results,
            "product.e2e_rules",
            GROUP,
            label,
            burst,
            ref="product.e2e.rate",
            consumer="worker",
            cpu_ref="product.e2e.cpu_us",
        )
        if templated < len(latencies):
            results.notes.append(
                f"filter + template: {len(latencies) - templated} of {len(latencies)} bodies were not the template's"
            )
        results.target(
            "saturation with a five-clause filter and a 1 KiB template ≥ 80 % of without",
            "product.e2e_rules.rate",
            ">=",
            0.80,
            ref="product.e2e.rate",
        )
    finally:
        await engine.service.delete(sub.id)
        await receiver.settle()


async def _recorder_lag(results: Results, js: JetStreamContext) -> None:
    """How far behind the recorder is when the deliveries end, and how long it takes to catch up."""
    try:
        pending = (await js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)).num_pending or 0
    except Exception as exc:  # noqa: BLE001 - informational only; the engine's internals may change
        results.notes.append(f"recorder lag not measured: {exc!r}")
        return
    started = time.monotonic()

    async def caught_up() -> bool:
        info = await js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)
        return not (info.num_pending or 0) and not (info.num_ack_pending or 0)

    done = await wait_until(caught_up, timeout=60, interval=0.2)
    results.add(
        "product.recorder_lag",
        GROUP,
        "recorder: attempt messages behind at the last delivery",
        float(pending),
        "msgs",
        note=f"caught up {time.monotonic() - started:.1f}s later" if done else "not caught up within 60 s",
    )


async def _profiled_burst(
    results: Results,
    scale: Scale,
    engine: Engine,
    receiver: Receiver,
    sub: Subscription,
    pid: int,
    profile_dir: Path,
) -> None:
    seconds = scale.pick(8.0, 15.0)
    await engine.service.pause(sub.id)
    await asyncio.sleep(1.0)
    await receiver.settle()
    rate = results.value("product.e2e.rate") or 3000.0
    count = int(rate * (seconds + 4))  # a backlog that outlasts the sampling (idle time is not sampled anyway)
    await preload(engine.publisher, "issue.updated", count)
    await receiver.reset()
    await engine.service.resume(sub.id)
    await asyncio.sleep(1.0)
    results.profile.extend(await _profile.record(pid, seconds, profile_dir))

    async def drained() -> bool:
        return (await receiver.stats()).count >= count

    await wait_until(drained, timeout=60, interval=0.2)
    await receiver.settle(timeout=30)


async def latency_diagnosis(
    results: Results, scale: Scale, workdir: Path, children: Children, receiver: Receiver
) -> None:
    """p99 at 500/s again, without the recorder process, and under the server's default sync."""
    variants = (
        ("diag.no_recorder", "as shipped, but no recorder process running", DEFAULT_CONFIG, False),
        ("diag.default_sync", "recorder running, nats-server's default sync", default_sync_config(workdir), True),
    )
    for key, label, config, recorder in variants:
        async with nats_server(workdir / key, children, config) as server:
            settings = bench_settings(server.url, workdir / f"{key}-data")
            async with open_engine(settings, name="diag") as engine:
                env = child_env(settings)
                started = [await children.start(str(TURBOHOOKS), "recorder", env=env)] if recorder else []
                started.append(await start_worker(children, env))
                try:
                    await subscribe(engine, "diag", receiver.url, E2E_TYPES)

                    async def probe(engine: Engine = engine) -> None:
                        await engine.publisher.publish(sample_event("issue.created"))

                    if not await receiver.await_ready(probe, timeout=60):
                        results.notes.append(f"latency diagnosis ({label}): the worker never delivered; skipped")
                        continue
                    fire = Firing(engine.publisher)
                    run = await measure_paced(receiver, fire, RATE, int(RATE * scale.pick(2.0, 8.0)), drain=5.0)
                    await fire.settle()
                    record_stored(results, key, GROUP, label, fire)
                    results.add(
                        f"{key}.p99",
                        GROUP,
                        f"p99 at {RATE:,.0f} events/s, {label}",
                        run.p99,
                        "ms",
                        ref="product.e2e.p99",
                        note=f"p50 {run.p50:,.2f} / p95 {run.p95:,.2f} ms",
                    )
                finally:
                    for process in started:
                        await children.stop(process)
                    await receiver.settle()
