"""The product: publishing, end-to-end delivery, fan-out, idle subscriptions, a backlog, hot-path costs, disk sync.

The ``load`` group (:func:`run_load`): real-world load on 1,000 subscriptions,
fan-out to 1,000 and to 100, and the moonshot.

End to end runs the real processes: ``turbohooks worker --integration webhook``
(one, then two copies) and ``turbohooks recorder``, against the minimal receiver;
subscriptions are created with ``open_engine(settings).service.create``.
"""

from __future__ import annotations

from pathlib import Path

from consumers import open_engine

from .._peers import Watched
from .._processes import TURBOHOOKS, Children, bench_settings, child_env, nats_server
from .._results import Results, Scale
from .._traffic import Receiver
from ._common import start_worker
from .delivery import end_to_end, latency_diagnosis
from .hot_path import hot_path
from .load import backlog, fanout, idle
from .moonshot import moonshot
from .publishing import publishing, sync_policy
from .realworld import TIMEOUT, create_fleet, fan_out, fan_out_wide, real_world

__all__ = ("run", "run_load")

_RECEIVER_PORTS = 10
"""The load's receiver listens on 10 ports: 10 receiving hosts for the worker's per-host connection limit."""


async def run(
    results: Results,
    scale: Scale,
    workdir: Path,
    children: Children,
    receiver: Receiver,
    *,
    profile_dir: Path | None = None,
) -> None:
    print("product", flush=True)
    async with nats_server(workdir / "nats", children) as server:
        settings = bench_settings(server.url, workdir / "data")
        async with open_engine(settings, name="bench") as engine:
            await publishing(results, scale, engine.js, engine.publisher)
            await engine.js.purge_stream(settings.stream_name)
            env = child_env(settings)
            recorder = await children.start(str(TURBOHOOKS), "recorder", env=env)
            worker = await start_worker(children, env)
            assert worker.pid is not None
            try:
                watched = Watched(
                    {
                        "worker": worker.pid,
                        "recorder": recorder.pid,
                        "nats-server": server.pid,
                        "receiver": receiver.process.pid,
                    }
                )
                await end_to_end(results, scale, engine, children, receiver, env, worker, watched, profile_dir)
                await backlog(results, scale, engine, receiver, worker.pid)
                subs = await fanout(results, scale, engine, receiver)
                existing = len(subs) + 2
                # "At rest": a fresh worker process, not one whose heap still
                # holds the high-water mark of the saturation runs above.
                await children.stop(worker)
                worker = await start_worker(children, env)
                assert worker.pid is not None
                await idle(results, scale, engine, receiver, existing, worker.pid, server.pid)
            finally:
                await children.stop(worker)
                await children.stop(recorder)
    hot_path(results, scale)
    await sync_policy(results, scale, workdir / "sync", children)
    if not scale.quick:
        await latency_diagnosis(results, scale, workdir / "diag", children, receiver)
    else:
        results.notes.append(
            "QUICK mode skips the latency diagnosis (p99 without the recorder, and under the default sync): "
            "run `make bench`."
        )


async def run_load(
    results: Results, scale: Scale, workdir: Path, children: Children, *, profile_dir: Path | None = None
) -> None:
    """Real-world load, fan-out and the moonshot, with a receiver of their own (per-path answers, 10 ports)."""
    print("load", flush=True)
    async with Receiver.running(children, max_seconds=3600, ports=_RECEIVER_PORTS) as receiver:
        async with nats_server(workdir / "nats", children) as server:
            settings = bench_settings(server.url, workdir / "data")
            async with open_engine(settings, name="load") as engine:
                env = {**child_env(settings), "WEBHOOK_TIMEOUT": str(TIMEOUT)}
                recorder = await children.start(str(TURBOHOOKS), "recorder", env=env)
                worker = await start_worker(children, env)
                assert worker.pid is not None and recorder.pid is not None
                print(f"  worker pid {worker.pid}, recorder pid {recorder.pid}", flush=True)
                try:
                    fleet = await create_fleet(results, scale, engine, receiver)
                    pids = {"worker": worker.pid, "recorder": recorder.pid, "receiver": receiver.process.pid}
                    if server.pid is not None:
                        pids["nats-server"] = server.pid
                    # The failing receivers last: their retries and held requests outlast the run.
                    await fan_out(results, scale, engine, receiver, fleet)
                    await real_world(
                        results, scale, engine, receiver, fleet, pids, failing=False, profile_dir=profile_dir
                    )
                    await fan_out_wide(results, scale, engine, receiver, fleet)
                    await real_world(results, scale, engine, receiver, fleet, pids, failing=True)
                finally:
                    await children.stop(worker)
                    await children.stop(recorder)
        await moonshot(results, scale, workdir / "moonshot", children, receiver)
