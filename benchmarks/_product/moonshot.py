"""The moonshot: 10,000 signed and recorded deliveries/s from one worker, under nats-server's default sync.

A fresh nats-server without ``sync_interval`` (its default policy), one
``turbohooks worker`` and one ``turbohooks recorder``; a backlog is published
first, then the subscription is resumed and the drain timed at the receiver.
What bounds it is read from the CPU each process used while deliveries
arrived, and from what the rest of the machine used meanwhile.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from consumers import RECORDER_CONSUMER, open_engine
from streams import ATTEMPTS_STREAM

from .._peers import Watched
from .._processes import TURBOHOOKS, Children, bench_settings, child_env, nats_server, wait_until
from .._results import Results, Scale
from .._traffic import Receiver, measure_burst
from ._common import E2E_TYPES, default_sync_config, preload, start_worker, subscribe
from .realworld import LOAD_GROUP

__all__ = ("moonshot",)

GOAL = 10_000.0


def _bound(shares: dict[str, float], others: float, cores: int) -> str:
    """A sentence naming what bounds the rate, from shares of a core over the drain."""
    worker = shares.get("worker", 0.0)
    ours = sum(shares.values())
    busiest = max(shares, key=lambda name: shares[name]) if shares else "n/a"
    if worker >= 0.85:
        why = f"the worker's one core (it is single-threaded: {worker:.0%} of a core)"
    elif ours + others >= 0.85 * cores:
        why = f"the machine's {cores} cores (ours {ours:.0%} + other work {others:.0%} of a core)"
    else:
        why = f"no core saturated (busiest: {busiest}); waiting on I/O or on the recorder"
    return why


async def moonshot(results: Results, scale: Scale, workdir: Path, children: Children, receiver: Receiver) -> None:
    count = scale.pick(10_000, 60_000)
    async with nats_server(workdir / "moonshot", children, default_sync_config(workdir / "moonshot-conf")) as server:
        settings = bench_settings(server.url, workdir / "moonshot-data")
        async with open_engine(settings, name="moonshot") as engine:
            env = child_env(settings)
            recorder = await children.start(str(TURBOHOOKS), "recorder", env=env)
            worker = await start_worker(children, env)
            try:
                sub = await subscribe(engine, "moonshot", receiver.url, E2E_TYPES, active=False)
                await preload(engine.publisher, "issue.updated", count, chunk=5000)
                await receiver.settle()
                watched = Watched(
                    {
                        "worker": worker.pid,
                        "recorder": recorder.pid,
                        "nats-server": server.pid,
                        "receiver": receiver.process.pid,
                    }
                )
                machine_before = psutil.cpu_times()
                started = time.monotonic()

                async def resume() -> None:
                    await engine.service.resume(sub.id)

                burst = await measure_burst(receiver, resume, count, limit=scale.pick(20.0, 60.0), watch=watched.pids)
                elapsed = time.monotonic() - started
                machine_after = psutil.cpu_times()
                pending = (await engine.js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)).num_pending or 0

                async def caught_up() -> bool:
                    info = await engine.js.consumer_info(ATTEMPTS_STREAM, RECORDER_CONSUMER)
                    return not (info.num_pending or 0) and not (info.num_ack_pending or 0)

                lag_started = time.monotonic()
                recorded = await wait_until(caught_up, timeout=60, interval=0.2)
                lag = time.monotonic() - lag_started
            finally:
                await children.stop(worker)
                await children.stop(recorder)
    busy = sum(
        getattr(machine_after, f) - getattr(machine_before, f)
        for f in ("user", "nice", "system", "irq", "softirq", "steal")
        if hasattr(machine_after, f)
    )
    shares = {name: share for name in sorted(burst.cpu) if (share := burst.cpu_share(name)) is not None}
    # The machine's busy time over the whole measurement, less ours over the delivery window (scaled to it).
    ours = sum(burst.cpu.values()) * (elapsed / burst.cpu_window[1] if burst.cpu_window[1] else 1.0)
    others = max(0.0, (busy - ours) / elapsed) if elapsed > 0 else 0.0
    cores = psutil.cpu_count() or 1
    state = "all delivered" if burst.complete else f"{burst.delivered:,} of {count:,} delivered"
    results.add(
        "load.moonshot.rate",
        LOAD_GROUP,
        f"moonshot: 1 worker, signed + recorded, nats-server's default sync, backlog of {count:,}",
        burst.rate,
        "/s",
        note=f"{state}; bound by {_bound(shares, others, cores)}",
    )
    results.target(
        "moonshot: 10,000 signed, recorded deliveries/s from one worker (default sync)",
        "load.moonshot.rate",
        ">=",
        GOAL,
    )
    cores_note = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    per = burst.cpu_per_delivery_us("worker")
    recorder_per = burst.cpu_per_delivery_us("recorder")
    results.add(
        "load.moonshot.cpu_us",
        LOAD_GROUP,
        "moonshot: worker CPU per delivery",
        per,
        "µs",
        note=f"recorder {recorder_per or 0:,.0f} µs; share of a core over {burst.cpu_window[1]:.1f}s: {cores_note}; "
        f"the rest of the machine: {others:.0%} of a core",
    )
    results.add(
        "load.moonshot.recorder_lag",
        LOAD_GROUP,
        "moonshot: recorder's attempt messages behind at the last delivery",
        float(pending),
        "msgs",
        note=f"caught up {lag:.1f}s later" if recorded else "not caught up within 60 s",
    )
