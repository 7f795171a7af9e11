"""The faults: each one an async function of the :class:`Run`, marking when the fault began and when it healed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
import subprocess
import threading
import time
from typing import Final

import aiohttp

from ._run import STREAM, Run, Scenario

__all__ = ("CLUSTER_SCENARIOS", "SCENARIOS", "by_name")


async def _kill_worker(run: Run) -> None:
    await run.kill_and_restart("worker")


async def _kill_recorder(run: Run) -> None:
    await run.kill_and_restart("recorder")


async def _kill_scheduler(run: Run) -> None:
    await run.kill_and_restart("scheduler")


async def _kill_up(run: Run) -> None:
    # The process group: `up` and the nats-server it started (a machine losing
    # the product). kill -9 of `up` alone would leave its nats-server running.
    await run.kill_and_restart("up", down=2.0)


async def _kill_gateway(run: Run) -> None:
    url = f"http://127.0.0.1:{run.gateway_port}/health"
    await run.kill_and_restart("gateway")
    assert run.fault_at is not None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        # From the kill: the admin API answers again (restart included).
                        run.resume_override = time.monotonic() - run.fault_at
                        return
            await asyncio.sleep(0.1)
    run.notes.append("the gateway did not answer /health within 30s of its restart")


async def _kill_nats(run: Run) -> None:
    assert run.nats is not None
    run.mark_fault()
    run.nats.kill()
    await run.nats.stop()
    await asyncio.sleep(1.0)
    await run.nats.start()  # same port, same store; returns once the server accepts clients
    run.mark_heal()  # "within 2 s of the server's return": its store recovery is the server's, not ours


def _hold_sqlite_lock(path: str, seconds: float, took: threading.Event) -> None:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        took.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


async def _sqlite_lock(run: Run) -> None:
    seconds = 12.0  # the product's busy_timeout is 5 s
    took = threading.Event()
    path = str(run.data_dir / "turbohooks.db")
    holder = asyncio.create_task(asyncio.to_thread(_hold_sqlite_lock, path, seconds, took))
    while not took.is_set() and not holder.done():
        await asyncio.sleep(0.01)
    run.mark_fault()
    await holder
    run.mark_heal()


async def _postgres_restart(run: Run) -> None:
    db = run.pg_database
    assert db is not None
    down = 5.0 if run.short else 10.0
    run.mark_fault()
    if run.options.pg_restart:
        version = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout.split()
        await asyncio.to_thread(
            subprocess.run, ["pg_ctlcluster", version[0], version[1], "restart"], check=False, timeout=120
        )
        run.notes.append(f"PostgreSQL {version[0]}/{version[1]} restarted (pg_ctlcluster)")
    else:
        # The machine's PostgreSQL serves others too: this run's database is
        # closed to connections and its backends terminated, as a restart would.
        await run.pg(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
        until = time.monotonic() + down
        while time.monotonic() < until:
            await run.pg(terminate, db)
            await asyncio.sleep(1.0)
        await run.pg(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        run.notes.append(f"PostgreSQL not restarted (shared): backends terminated, connections refused for {down:g}s")
    run.mark_heal()


async def _receiver_down(run: Run) -> None:
    down = 10.0 if run.short else 120.0
    run.mark_fault()
    await run.receiver.stop()
    await asyncio.sleep(down)
    run.mark_heal()
    await run.receiver.start()


async def _receiver_slow(run: Run) -> None:
    window = 5.0 if run.short else 20.0
    run.mark_fault()
    run.receiver.slow = (1.0, 2.0)
    await asyncio.sleep(window)
    run.receiver.slow = None
    run.mark_heal()


def _fill(path: str) -> int:
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as handle:
        while True:
            try:
                handle.write(chunk)
                handle.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
            written += len(chunk)
    return written


async def _disk_full(run: Run) -> None:
    hold = 5.0 if run.short else 10.0
    filler = run.data_dir / "filler"
    run.mark_fault()
    written = await asyncio.to_thread(_fill, str(filler))
    await asyncio.sleep(hold)
    filler.unlink()
    run.mark_heal()
    run.notes.append(f"data dir (tmpfs) full for {hold:g}s ({written >> 20} MiB filler)")


async def _cluster_one_down(run: Run) -> None:
    await _stop_stream_leader(run, kill=False)


async def _cluster_one_killed(run: Run) -> None:
    await _stop_stream_leader(run, kill=True)


async def _stop_stream_leader(run: Run, *, kill: bool) -> None:
    cluster = run.cluster
    assert cluster is not None
    leader = await cluster.stream_leader(STREAM)
    index = leader if leader is not None else 0
    how = "kill -9" if kill else "SIGTERM"
    run.notes.append(f"stopped node {index + 1} ({how}), the {STREAM} leader" if leader is not None else "")
    run.mark_fault()
    await cluster.stop_node(index, kill=kill)
    await asyncio.sleep(5.0 if run.short else 8.0)
    await cluster.start_node(index)
    run.mark_heal()


async def _cluster_two_down(run: Run) -> None:
    cluster = run.cluster
    assert cluster is not None
    leader = await cluster.stream_leader(STREAM)
    first = leader if leader is not None else 0
    second = (first + 1) % 3
    run.mark_fault()
    await asyncio.gather(cluster.stop_node(first, kill=True), cluster.stop_node(second, kill=True))
    await asyncio.sleep(5.0 if run.short else 10.0)
    await asyncio.gather(cluster.start_node(first, wait=False), cluster.start_node(second, wait=False))
    await cluster.wait_ready(60)
    run.mark_heal()
    run.notes.append(f"nodes {first + 1} and {second + 1} stopped (kill -9)")


SCENARIOS: Final = (
    Scenario("kill-worker", "kill -9 of the worker, restarted after 1 s", _kill_worker),
    Scenario("kill-recorder", "kill -9 of the recorder, restarted after 1 s", _kill_recorder, resume_on="log"),
    Scenario(
        "kill-gateway",
        "kill -9 of the gateway, restarted after 1 s (resume: /health answers, from the kill)",
        _kill_gateway,
        roles=("worker", "recorder", "gateway"),
        resume_on="gateway",
    ),
    Scenario(
        "kill-scheduler",
        "kill -9 of the scheduler, restarted after 1 s",
        _kill_scheduler,
        roles=("worker", "recorder", "scheduler"),
    ),
    Scenario("kill-nats", "kill -9 of nats-server, restarted on its store after 1 s", _kill_nats, resume_limit=2.0),
    Scenario(
        "kill-up", "kill -9 of `turbohooks up` and its nats-server, restarted after 2 s", _kill_up, roles=(), nats="up"
    ),
    Scenario(
        "sqlite-lock",
        "another connection holds SQLite's write lock (BEGIN IMMEDIATE) 12 s",
        _sqlite_lock,
        resume_on="log",
    ),
    Scenario(
        "postgres-restart",
        "PostgreSQL unavailable 10 s (restart, or backends terminated)",
        _postgres_restart,
        database="postgres",
        resume_on="log",
    ),
    Scenario("receiver-down", "the receiver refuses connections for 2 min (short: 10 s)", _receiver_down, settle=200.0),
    Scenario("receiver-slow", "the receiver answers in 1-2 s for 20 s (short: 5 s)", _receiver_slow, settle=200.0),
    Scenario("disk-full", "the data dir (a 64 MiB tmpfs) full for 10 s", _disk_full, resume_on="log", tmpfs_mb=64),
)

CLUSTER_SCENARIOS: Final = (
    Scenario(
        "cluster-one-down",
        "3-node cluster, R3, 2 workers (own data dirs), PostgreSQL: the stream leader stopped (SIGTERM) mid-burst",
        _cluster_one_down,
        roles=("worker-a", "worker-b", "recorder"),
        nats="cluster",
        database="postgres",
        resume_from="fault",
        resume_limit=5.0,
    ),
    # A crash instead of a stop: the followers wait out Raft's election timeout (nats-server: 4-9 s, not
    # configurable) before one of them leads the stream and its consumers, so resuming takes that long.
    Scenario(
        "cluster-one-killed",
        "3-node cluster, R3, 2 workers, PostgreSQL: the stream leader killed (kill -9) mid-burst",
        _cluster_one_killed,
        roles=("worker-a", "worker-b", "recorder"),
        nats="cluster",
        database="postgres",
        resume_from="fault",
        resume_limit=10.0,
    ),
    Scenario(
        "cluster-two-down",
        "3-node cluster, R3: two nodes killed 10 s (publishes refused after 3 s), then back",
        _cluster_two_down,
        roles=("worker-a", "worker-b", "recorder"),
        nats="cluster",
        database="postgres",
        retry_horizon=3.0,
    ),
)


def by_name(name: str) -> Scenario:
    for scenario in (*SCENARIOS, *CLUSTER_SCENARIOS):
        if scenario.name == name:
            return scenario
    names = ", ".join(s.name for s in (*SCENARIOS, *CLUSTER_SCENARIOS))
    raise KeyError(f"no scenario {name!r}; choose from {names}")
