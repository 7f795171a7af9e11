"""Real-world load: 1,000 subscriptions on slow and failing receivers, fan-out to 1,000 and to 100, the setup.

Every subscription points at its own path of one receiver process (``/p/<n>``,
spread over several ports: several receiving hosts), whose per-path profile
says how it answers: at once (the fast-receiver reference), in 100 ms ± 50 ms,
or with 10 % of the paths timing out and 5 % answering 500.

The catalog has 58 Turbo types and subjects are ``turbo.<type>``, so 1,000
subscriptions cannot each have their own type: subscription ``n`` takes type
``n % 50`` of :data:`LOAD_TYPES`, and "2,000 deliveries/s" is 100 events/s over
those 50 types, each event going to the 20 subscriptions of its type. Every
subscription also takes :data:`FANOUT_TYPE` (the one-to-1,000 fan-out) and the
first 100 take :data:`WIDE_TYPE` (100 events/s to 100 subscriptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psutil

from consumers import Engine, Subscription, consumer_name
from streams import EVENT_CATALOG, Event

from .. import _profile
from .._processes import peak_rss, wait_until
from .._receiver import OK, path_behaviour
from .._results import Results, Scale, percentile
from .._traffic import Receiver, sample_event
from ._common import FANOUT_TYPE, loops_running, subscribe

__all__ = (
    "LOAD_GROUP",
    "create_fleet",
    "fan_out",
    "fan_out_wide",
    "quiet",
    "real_world",
)

LOAD_GROUP: Final = "load"
WIDE_TYPE: Final = "milestone.progress_updated"
WIDE: Final = 100
LOAD_TYPES: Final = [t for t in EVENT_CATALOG if t not in (FANOUT_TYPE, WIDE_TYPE)][:50]
SLOW: Final = {"mean": 100.0, "jitter": 50.0}
"""The receivers' answer time: uniform in 100 ms ± 50 ms, fixed per path."""
FAILING: Final = {**SLOW, "timeout": 0.10, "error": 0.05, "hang": 30.0}
"""10 % of the paths hold their answer 30 s (the worker gives up at ``WEBHOOK_TIMEOUT``), 5 % answer 500."""
TIMEOUT: Final = 10.0
"""``WEBHOOK_TIMEOUT`` of the load group's worker: a timing-out receiver costs 10 s, not the default 30."""
SEED: Final = 1


@dataclass
class Fleet:
    subs: list[Subscription]

    def of_type(self, event_type: str) -> list[int]:
        index = LOAD_TYPES.index(event_type)
        return list(range(index, len(self.subs), len(LOAD_TYPES)))


async def create_fleet(results: Results, scale: Scale, engine: Engine, receiver: Receiver) -> Fleet:
    """The subscriptions, created one by one through ``SubscriptionService.create``; the setup's time apart."""
    count = scale.pick(200, 1000)
    started = time.monotonic()
    subs = []
    for n in range(count):
        types = [LOAD_TYPES[n % len(LOAD_TYPES)], FANOUT_TYPE] + ([WIDE_TYPE] if n < WIDE else [])
        subs.append(await subscribe(engine, f"load-{n}", receiver.path_url(n), types))
    created = time.monotonic() - started
    running = await loops_running(engine.js, engine.settings.stream_name, subs, timeout=scale.pick(60, 300))
    bound = time.monotonic() - started - created
    results.add(
        "load.setup.create",
        LOAD_GROUP,
        f"setup: {count:,} subscriptions created one by one (SubscriptionService.create)",
        created,
        "s",
        note=f"{count / created:,.0f}/s; each writes SQL and the KV mirror and creates its JetStream consumer; "
        "not part of any figure below",
    )
    results.add(
        "load.setup.bound",
        LOAD_GROUP,
        "setup: then until the worker had a pull waiting on every consumer",
        bound,
        "s",
        note="" if running else "not every loop was running when the timeout ran out",
    )
    return Fleet(subs)


# -- paced load ---------------------------------------------------------------------------------


@dataclass
class _Run:
    """One paced run: what was offered, what came back, what the worker used."""

    offered: float
    """Deliveries per second demanded."""
    seconds: float
    expected: list[int] = field(default_factory=lambda: [0, 0, 0])
    """Deliveries demanded per kind of path."""
    window: tuple[float, float] = (0.0, 0.0)
    window_requests: int = 0
    window_ok: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    pending: tuple[int, int] = (0, 0)
    """Unacknowledged events of the healthy subscriptions, early in the run and at its end."""
    lag: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the start, healthy deliveries demanded − received) once a second."""
    rss: list[tuple[float, float]] = field(default_factory=list)
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)
    stored_ms: list[float] = field(default_factory=list)
    """Per published batch: from building its events to JetStream's last ack (stored; fsynced as shipped)."""


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            found[name] = float(times.user + times.system)
    return found


async def _unacked(engine: Engine, subs: Sequence[Subscription]) -> int:
    """Events not yet acknowledged (undelivered + in the worker's hands) over ``subs``."""
    total = 0
    for start in range(0, len(subs), 100):
        infos = await asyncio.gather(
            *(
                engine.js.consumer_info(engine.settings.stream_name, consumer_name(s))
                for s in subs[start : start + 100]
            ),
            return_exceptions=True,
        )
        for info in infos:
            if not isinstance(info, BaseException):
                total += (info.num_pending or 0) + (info.num_ack_pending or 0)
    return total


async def quiet(results: Results, engine: Engine, fleet: Fleet, phase: str) -> None:
    """Start ``phase`` with every event of the fleet acknowledged: one phase's backlog is not the next one's.

    A backlog left after 20 s is purged from the stream (what the worker already holds still finishes),
    and the report says so.
    """
    left = await _unacked(engine, fleet.subs)

    async def acknowledged() -> bool:
        nonlocal left
        left = await _unacked(engine, fleet.subs)
        return left == 0

    if await wait_until(acknowledged, timeout=20.0, interval=1.0):
        return
    purged = left
    await engine.js.purge_stream(engine.settings.stream_name)
    drained = await wait_until(acknowledged, timeout=60.0, interval=1.0)
    results.notes.append(
        f"{phase}: the phase before left {purged:,} events unacknowledged 20 s after it ended; they were purged "
        + ("first" if drained else f"and {left:,} were still in the worker's hands 60 s later")
    )


async def _timed_emit(engine: Engine, batch: list[Event], built: float, stored_ms: list[float]) -> None:
    await engine.publisher.emit_many(batch)
    stored_ms.append((time.monotonic() - built) * 1000.0)


async def _paced(
    engine: Engine,
    receiver: Receiver,
    fleet: Fleet,
    kinds: list[int],
    rate: float,
    seconds: float,
    pids: dict[str, int],
    profile: Callable[[], Awaitable[object]] | None = None,
) -> _Run:
    """``rate`` deliveries/s over the fleet for ``seconds``: events of random load types, published in ticks.

    ``profile`` is started once the warm-up is over (py-spy on the worker), and awaited at the end.
    """
    per_type = len(fleet.subs) // len(LOAD_TYPES)
    events_per_second = rate / per_type
    healthy = [fleet.subs[n] for n, kind in enumerate(kinds) if kind == OK]
    run = _Run(offered=rate, seconds=seconds)
    rng = random.Random(SEED)
    await receiver.reset()
    publishes: set[asyncio.Task[object]] = set()
    pending_task: asyncio.Task[int] | None = None
    profiling: asyncio.Task[object] | None = None
    sent = 0
    window_start: tuple[float, int, int, dict[str, float]] | None = None
    warmup = seconds * 0.2
    started = time.monotonic()
    next_sample = started + 1.0
    worker_pid = pids["worker"]
    async with peak_rss(worker_pid, interval=0.5) as rss:
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * events_per_second) - sent
            if due > 0:
                batch: list[Event] = []
                for _ in range(due):
                    event_type = LOAD_TYPES[rng.randrange(len(LOAD_TYPES))]
                    batch.append(sample_event(event_type, sent))
                    sent += 1
                    for n in fleet.of_type(event_type):
                        run.expected[kinds[n]] += 1
                task: asyncio.Task[object] = asyncio.create_task(_timed_emit(engine, batch, now, run.stored_ms))
                publishes.add(task)
                task.add_done_callback(publishes.discard)
            if now >= next_sample:
                next_sample += 1.0
                stats = await receiver.stats()
                run.lag.append((now - started, run.expected[OK] - stats.kinds[OK]))
                if window_start is None and now - started >= warmup:
                    window_start = (now, stats.count, stats.kinds[OK], _cpu(pids))
                    pending_task = asyncio.create_task(_unacked(engine, healthy))
                    if profile is not None:
                        profiling = asyncio.create_task(profile())
            await asyncio.sleep(0.02)
        stats = await receiver.stats()
        end = time.monotonic()
        cpu_end = _cpu(pids)
        pending_end = await _unacked(engine, healthy)
        run.rss = list(rss)
    if window_start is not None:
        run.window = (window_start[0], end)
        run.window_requests = stats.count - window_start[1]
        run.window_ok = stats.kinds[OK] - window_start[2]
        run.cpu = {name: cpu_end[name] - window_start[3][name] for name in cpu_end if name in window_start[3]}
    run.pending = (await pending_task if pending_task is not None else 0, pending_end)
    if publishes:
        await asyncio.wait(set(publishes), timeout=10)
    if profiling is not None:
        await profiling

    async def healthy_in() -> bool:
        return (await receiver.stats()).kinds[OK] >= run.expected[OK]

    await wait_until(healthy_in, timeout=5.0, interval=0.2)
    # Only this run's events: published (arrival - latency, one machine's clocks) after it started.
    run.samples = [s for s in await receiver.path_samples() if s[0] - s[1] / 1000.0 >= started - 0.05]
    return run


def _record_run(
    results: Results,
    key: str,
    label: str,
    run: _Run,
    kinds: list[int],
    profile: dict[str, float],
    *,
    cpu_ref: str | None,
) -> None:
    """The figures of one paced run; the healthy paths' latencies only."""
    delays = [path_behaviour(n, **_behaviour(profile))[1] * 1000.0 for n in range(len(kinds))]
    ok = [(latency, path) for _, latency, path, kind in run.samples if kind == OK and not math.isnan(latency)]
    missing = max(0, run.expected[OK] - len(ok))
    arrival = [latency for latency, _ in ok] + [math.inf] * missing
    answered = [latency + delays[path] for latency, path in ok] + [math.inf] * missing
    p99 = percentile(arrival, 99)
    window = run.window[1] - run.window[0]
    sustained = run.window_ok / window if window > 0 else None
    healthy_share = run.expected[OK] / max(1, sum(run.expected))
    offered_ok = run.offered * healthy_share
    results.add(
        f"{key}.offered",
        LOAD_GROUP,
        f"{label}: healthy deliveries/s demanded",
        offered_ok,
        "/s",
        note=f"{run.offered:,.0f}/s in all over {len(kinds):,} subscriptions for {run.seconds:.0f}s",
    )
    results.add(
        f"{key}.rate",
        LOAD_GROUP,
        f"{label}: healthy deliveries/s sustained",
        sustained,
        "/s",
        ref=f"{key}.offered",
        note=f"over the last {window:.0f}s (the first 20 % is warm-up)",
    )
    results.add(
        f"{key}.lag_growth",
        LOAD_GROUP,
        f"{label}: unacknowledged events of the healthy subscriptions, end − early",
        float(run.pending[1] - run.pending[0]),
        "events",
        note=f"{run.pending[0]:,} at {0.2 * run.seconds:.0f}s, {run.pending[1]:,} at the end; "
        f"receiver-side lag {_lag_note(run.lag)}",
    )
    results.add(
        f"{key}.p99",
        LOAD_GROUP,
        f"{label}: p99 publish → receipt, healthy paths (the receiver's own answer time excluded)",
        None if math.isnan(p99) else p99,  # ∞ (deliveries missing) is a miss, not "not measured"
        "ms",
        note=f"p50 {percentile(arrival, 50):,.1f} / p95 {percentile(arrival, 95):,.1f} ms; publish → stored "
        f"(JetStream's ack, the floor) p50 {percentile(run.stored_ms, 50):,.1f} / p99 "
        f"{percentile(run.stored_ms, 99):,.1f} ms; publish → answered p99 {percentile(answered, 99):,.0f} ms; "
        f"{missing:,} of {run.expected[OK]:,} not received within 5 s",
    )
    peak = max((mb for _, mb in run.rss), default=math.nan)
    results.add(f"{key}.rss", LOAD_GROUP, f"{label}: worker peak RSS", peak, "MB")
    cpu_window = run.window_requests
    if "worker" in run.cpu and cpu_window > 0:
        shares = ", ".join(f"{name} {seconds / window:.0%}" for name, seconds in sorted(run.cpu.items()))
        results.add(
            f"{key}.cpu_us",
            LOAD_GROUP,
            f"{label}: worker CPU per request",
            run.cpu["worker"] / cpu_window * 1e6,
            "µs",
            ref=cpu_ref,
            note=f"{cpu_window:,} requests in the window; share of a core: {shares}",
        )
    if kinds.count(OK) < len(kinds):
        got = [0, 0, 0]
        for _, _, _, kind in run.samples:
            got[kind] += 1
        results.notes.append(
            f"{label}: requests received per kind of path (answered / 500 / timing out): "
            f"{got[0]:,} / {got[1]:,} / {got[2]:,}, for {run.expected[0]:,} / {run.expected[1]:,} / "
            f"{run.expected[2]:,} deliveries demanded (retries come on top; WEBHOOK_TIMEOUT={TIMEOUT:.0f}s)"
        )
    results.series.setdefault("load", {})[key] = {"lag": run.lag, "rss": run.rss, "p99": p99}


def _behaviour(profile: dict[str, float]) -> dict[str, Any]:
    return {
        "mean": profile.get("mean", 0.0),
        "jitter": profile.get("jitter", 0.0),
        "timeout": profile.get("timeout", 0.0),
        "error": profile.get("error", 0.0),
        "hang": profile.get("hang", 0.0),
        "seed": SEED,
    }


def _lag_note(lag: list[tuple[float, int]]) -> str:
    if len(lag) < 4:
        return "n/a"
    quarter = max(1, len(lag) // 4)
    first = statistics.mean(v for _, v in lag[quarter : 2 * quarter])
    last = statistics.mean(v for _, v in lag[-quarter:])
    return f"(healthy demanded − received, in flight included) {first:,.0f} in the 2nd quarter, {last:,.0f} in the last"


async def real_world(
    results: Results,
    scale: Scale,
    engine: Engine,
    receiver: Receiver,
    fleet: Fleet,
    pids: dict[str, int],
    *,
    failing: bool,
    profile_dir: Path | None = None,
) -> None:
    """The fast-receiver reference and the slow receivers (``failing=False``), or the failing receivers.

    With ``profile_dir``, py-spy samples the worker during the slow receivers' run.
    """
    rate = scale.pick(500.0, 2000.0)
    seconds = scale.pick(10.0, 60.0)
    count = len(fleet.subs)
    scale_note = "" if count >= 1000 and rate >= 2000 else f"measured with {count:,} subscriptions, {rate:,.0f}/s"
    fast_key, slow_key, failing_key = "load.fast", "load.slow", "load.failing"
    variants = [
        (fast_key, "fast receivers (answer at once)", {}, scale.pick(5.0, 20.0), "product.e2e.cpu_us"),
        (slow_key, "receivers answering in 100 ± 50 ms", SLOW, seconds, f"{fast_key}.cpu_us"),
    ]
    if failing:
        variants = [
            (failing_key, "the same, 10 % timing out and 5 % answering 500", FAILING, seconds, f"{fast_key}.cpu_us")
        ]
    for key, label, profile, duration, ref in variants:
        await quiet(results, engine, fleet, key)
        await receiver.profile(**_behaviour(profile))
        kinds = [path_behaviour(n, **_behaviour(profile))[0] for n in range(count)]
        await receiver.settle()
        spy: Callable[[], Awaitable[object]] | None = None
        if profile_dir is not None and key == slow_key:

            async def spy_worker(seconds: float = min(15.0, duration * 0.6), out: Path = profile_dir) -> None:
                lines = await _profile.record(pids["worker"], seconds, out, "worker-load-profile")
                results.series["load_profile"] = lines

            spy = spy_worker
        run = await _paced(engine, receiver, fleet, kinds, rate, duration, pids, spy)
        _record_run(results, key, f"{count:,} subscriptions, {label}", run, kinds, profile, cpu_ref=ref)
    key = failing_key if failing else slow_key
    who = "healthy 85 %: " if failing else ""
    results.target(
        f"real-world load: {who}sustained ≥ 95 % of the demanded rate",
        f"{key}.rate",
        ">=",
        0.95,
        ref=f"{key}.offered",
        scale_note=scale_note,
    )
    results.target(
        f"real-world load: {who}no growing lag (unacknowledged, end − early ≤ 1 s of traffic)",
        f"{key}.lag_growth",
        "<=",
        rate,
        scale_note=scale_note,
    )
    results.target(
        f"real-world load: {who}p99 ≤ receiver latency + 25 ms", f"{key}.p99", "<=", 25.0, scale_note=scale_note
    )
    if failing:
        return
    results.target("real-world load: worker RSS < 300 MB", f"{slow_key}.rss", "<", 300, scale_note=scale_note)
    results.target(
        "real-world load: worker CPU per delivery within 1.3× of the fast-receiver figure",
        f"{slow_key}.cpu_us",
        "<=",
        1.3,
        ref=f"{fast_key}.cpu_us",
        scale_note=scale_note,
    )


# -- fan-out ------------------------------------------------------------------------------------


async def _tick_publish(engine: Engine, event_type: str, rate: float, seconds: float) -> int:
    sent = 0
    tasks: set[asyncio.Task[object]] = set()
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds:
        due = int((now - started) * rate) - sent
        if due > 0:
            batch = [sample_event(event_type, sent + i) for i in range(due)]
            sent += due
            task: asyncio.Task[object] = asyncio.create_task(engine.publisher.emit_many(batch))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.01)
    if tasks:
        await asyncio.wait(set(tasks), timeout=10)
    return sent


async def fan_out(results: Results, scale: Scale, engine: Engine, receiver: Receiver, fleet: Fleet) -> None:
    """One event to every subscription: the time until the last copy arrived."""
    await receiver.profile()
    count = len(fleet.subs)
    spans = []
    for n in range(3):
        await receiver.settle()
        await engine.publisher.publish(sample_event(FANOUT_TYPE, n))

        async def all_copies() -> bool:
            return (await receiver.stats()).count >= count

        await wait_until(all_copies, timeout=10, interval=0.02)
        _, latencies = await receiver.samples()
        if len(latencies) >= count:
            spans.append(max(latencies))
    results.add(
        "load.fanout.last",
        LOAD_GROUP,
        f"one event to {count:,} subscriptions: last copy received after",
        statistics.median(spans) if spans else None,
        "ms",
        note=f"median of 3 ({', '.join(f'{s:,.0f}' for s in spans)} ms)" if spans else "copies missing after 10 s",
    )
    results.target(
        "fan-out: one event to 1,000 subscriptions, last copy within 1 s",
        "load.fanout.last",
        "<=",
        1000.0,
        scale_note="" if count >= 1000 else f"measured with {count:,} subscriptions",
    )
    await receiver.settle()


async def fan_out_wide(results: Results, scale: Scale, engine: Engine, receiver: Receiver, fleet: Fleet) -> None:
    """100 events/s to 100 subscriptions: 10,000 deliveries/s demanded, what is achieved."""
    await quiet(results, engine, fleet, "load.fanout.wide")
    await receiver.profile()
    await receiver.settle()
    seconds = scale.pick(3.0, 10.0)
    sent = await _tick_publish(engine, WIDE_TYPE, 100.0, seconds)
    published = time.monotonic()
    expected = sent * WIDE

    async def all_in() -> bool:
        return (await receiver.stats()).count >= expected

    await wait_until(all_in, timeout=scale.pick(30.0, 90.0), interval=0.2)
    stats = await receiver.stats()
    span = stats.last - stats.first
    achieved = (stats.count - 1) / span if stats.count > 1 and span > 0 else None
    results.add(
        "load.fanout.wide",
        LOAD_GROUP,
        f"100 events/s for {seconds:.0f}s, each to {WIDE} subscriptions (10,000 deliveries/s demanded): achieved",
        achieved,
        "/s",
        ref="product.e2e.rate",
        note=f"{stats.unique:,} of {expected:,} delivered ({stats.count - stats.unique:,} more than once: "
        f"redelivered past ack_wait), the last {max(0.0, stats.last - published):.1f}s after publishing ended; "
        "compared with one subscription's saturation",
    )
    await receiver.settle(timeout=30)
