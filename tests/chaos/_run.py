"""One scenario from start to verdict: set up, publish while the fault runs, wait for quiescence, count."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import asyncpg  # type: ignore[import-untyped]
from nats.aio.client import Client as NATS

from publishers import EventPublisher
from streams import DEFAULT_CONFIG, EmbeddedNats, Settings, connect_nats
from streams._cluster import NatsCluster

from ._harness import EVENT_TYPE, Burst, DeliveryLog, Proc, Receiver, free_port, run_cli

__all__ = ("Options", "Result", "Run", "Scenario", "run_scenario")

PG_ADMIN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
STREAM: Final = "TURBO_EVENTS"
RETRY_SCHEDULE: Final = "1s,2s,4s,8s" + ",10s" * 14
"""Short first retries, then every 10 s for 2.5 min: a receiver down 2 min still gets every event."""

Fault = Callable[["Run"], Coroutine[object, object, None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    fault: Fault
    roles: tuple[str, ...] = ("worker", "recorder")
    nats: Literal["single", "cluster", "up"] = "single"
    database: Literal["sqlite", "postgres"] = "sqlite"
    resume_on: Literal["receiver", "log", "gateway"] = "receiver"
    resume_from: Literal["heal", "fault"] = "heal"
    resume_limit: float | None = None
    """Seconds within which deliveries must resume for a pass (the issue's promise), or None."""
    retry_horizon: float | None = None
    """The publisher's TURBOHOOKS_PUBLISH_RETRY_HORIZON (default 60 s)."""
    tmpfs_mb: int | None = None
    """Mount a tmpfs of this size as the data dir."""
    settle: float = 150.0


@dataclass(frozen=True)
class Options:
    events: int = 5_000
    rate: float = 500.0
    short: bool = False
    pg_restart: bool = False
    """Really restart the machine's PostgreSQL (pg_ctlcluster); off: block and terminate this run's backends."""
    keep: bool = False
    webhook_timeout: float = 10.0
    """WEBHOOK_TIMEOUT of the processes; ack_wait (a crashed worker's events come back) is this + max(2, half)."""


@dataclass
class Result:
    scenario: str
    published: int = 0
    acked: int = 0
    refused: int = 0
    received: int = 0
    in_log: int = 0
    lost: int = 0
    missing_from_log: int = 0
    duplicates: int = 0
    stream_messages: int | None = None
    resume: float | None = None
    verdict: str = "ERROR"
    notes: list[str] = field(default_factory=list)
    workdir: str = ""


class Run:
    """The state a fault works on."""

    def __init__(self, scenario: Scenario, options: Options, root: Path) -> None:
        self.scenario = scenario
        self.options = options
        self.short = options.short
        self.root = root
        self.data_dir = root / "data"
        self.receiver = Receiver()
        self.procs: dict[str, Proc] = {}
        self.nats: EmbeddedNats | None = None
        self.cluster: NatsCluster | None = None
        self.nats_url = ""
        self.database_url = ""
        self.pg_database: str | None = None
        self.env: dict[str, str] = {}
        self.fault_at: float | None = None
        self.heal_at: float | None = None
        self.resume_override: float | None = None
        self.notes: list[str] = []
        self.log_samples: list[tuple[float, int]] = []
        self.mounted = False
        self.gateway_port = free_port()
        self._up_port = 0

    def mark_fault(self) -> None:
        self.fault_at = time.monotonic()

    def mark_heal(self) -> None:
        self.heal_at = time.monotonic()

    def proc_env(self, data_dir: Path | None = None, *, embedded: bool = False) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TURBOHOOKS_", "WEBHOOK_", "NATS_", "DATABASE_"))
        }
        env.update(self.env)
        env["TURBOHOOKS_DATA_DIR"] = str(data_dir or self.data_dir)
        if embedded:
            env.pop("NATS_URL", None)
        return env

    def role(self, name: str, data_dir: Path | None = None) -> Proc:
        """The process of one role (``worker``, ``worker-b``, ``recorder``, ``gateway``, ``scheduler``, ``up``)."""
        kind = name.split("-")[0]
        args, ready = {
            "worker": (["worker", "--integration", "webhook"], "worker running"),
            "recorder": (["recorder"], "recorder running"),
            "gateway": (["gateway", "--port", str(self.gateway_port)], "admin API"),
            "scheduler": (["scheduler"], "scheduler running"),
            "up": (["up", "--port", str(self.gateway_port), "--nats-port", str(self._up_port)], "turbohooks is up"),
        }[kind]
        env = self.proc_env(data_dir, embedded=kind == "up")
        return Proc(name, args, env, self.root / f"{name}.log", ready)

    async def kill_and_restart(self, name: str, down: float = 1.0) -> None:
        """kill -9 one role (its whole process group), wait ``down`` seconds, start it again."""
        proc = self.procs[name]
        self.mark_fault()
        proc.kill9()
        await proc.wait_dead()
        await asyncio.sleep(down)
        self.mark_heal()
        await proc.start()

    async def pg(self, sql: str, *args: object) -> None:
        """One statement on the machine's PostgreSQL, as its superuser (database ``postgres``)."""
        connection = await asyncio.wait_for(asyncpg.connect(PG_ADMIN), 10)
        try:
            await connection.execute(sql, *args)
        finally:
            await connection.close()


async def _wait_consumer(nc: NATS, subscription_hex: str, workers: int, timeout: float) -> None:
    """Until the subscription's consumer exists and holds pull requests from ``workers`` processes."""
    js = nc.jetstream(timeout=5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            for info in await js.consumers_info(STREAM):
                if info.name.endswith(subscription_hex) and (info.num_waiting or 0) >= workers:
                    return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"no consumer with pull requests for subscription {subscription_hex} within {timeout:g}s")


async def _setup_nats(run: Run) -> None:
    sc = run.scenario
    if sc.nats == "single":
        run.nats = EmbeddedNats(
            store_dir=run.root / "jetstream",
            port=free_port(),
            config=DEFAULT_CONFIG,
            log_file=run.root / "nats-server.log",
        )
        await run.nats.start()
        run.nats_url = run.nats.url
    elif sc.nats == "cluster":
        run.cluster = NatsCluster(store_root=run.root / "cluster", log_dir=run.root)
        await run.cluster.start()
        # streams.connect_nats takes one URL (a comma-joined NATS_URL is refused by
        # nats-py): the processes get node 1's and learn the other two from it.
        run.nats_url = run.cluster.urls[0]
        run.env["TURBOHOOKS_STREAM_REPLICAS"] = "3"
    else:
        run._up_port = free_port()
        run.nats_url = f"nats://127.0.0.1:{run._up_port}"


async def _setup_database(run: Run) -> None:
    if run.scenario.database == "postgres":
        run.pg_database = f"chaos_{uuid.uuid4().hex[:10]}"
        await run.pg(f'CREATE DATABASE "{run.pg_database}"')
        run.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{run.pg_database}"
        run.env["DATABASE_URL"] = run.database_url
    else:
        run.database_url = f"sqlite+aiosqlite:///{(run.data_dir / 'turbohooks.db').resolve()}"


async def _teardown(run: Run) -> None:
    for proc in run.procs.values():
        with contextlib.suppress(Exception):
            await proc.stop()
    with contextlib.suppress(Exception):
        await run.receiver.stop()
    if run.nats is not None:
        with contextlib.suppress(Exception):
            await run.nats.stop()
    if run.cluster is not None:
        with contextlib.suppress(Exception):
            await run.cluster.stop()
    if run.pg_database is not None:
        with contextlib.suppress(Exception):
            await run.pg(f'ALTER DATABASE "{run.pg_database}" ALLOW_CONNECTIONS true')
            await run.pg(f'DROP DATABASE "{run.pg_database}" WITH (FORCE)')
    if run.mounted:
        subprocess.run(["umount", "-l", str(run.data_dir)], check=False, capture_output=True)


async def _sample_log(run: Run, log: DeliveryLog, subscription_id: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        count = await log.count(subscription_id)
        if count is not None:
            run.log_samples.append((time.monotonic(), count))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def _resume(run: Run, burst: Burst) -> float | None:
    sc = run.scenario
    if run.resume_override is not None:
        return run.resume_override
    ref = run.fault_at if sc.resume_from == "fault" else run.heal_at
    if ref is None:
        return None
    if sc.resume_on == "log":
        before = [c for t, c in run.log_samples if t <= ref]
        base = before[-1] if before else 0
        later = [t for t, c in run.log_samples if t > ref and c > base]
        return later[0] - ref if later else None
    # The first delivery of an event published after the reference moment:
    # new events flow again (a backlog drained by in-hand messages does not count).
    seen = run.receiver.first_seen
    fresh = [seen[e] for e, t in burst.sent_at.items() if t > ref and e in burst.acked and e in seen]
    if fresh:
        return max(0.0, min(fresh) - ref)
    return run.receiver.first_after(ref)


async def _quiesce(run: Run, burst: Burst, log: DeliveryLog, subscription_id: str) -> dict[str, str]:
    """Wait (bounded) until every acknowledged event was received and every received one is in the log."""
    settle = run.scenario.settle if not run.short else min(run.scenario.settle, 60.0)
    # Longer than ack_wait plus the longest retry gap (10 s): a pause that long is a stall.
    ack_wait = run.options.webhook_timeout + max(2.0, run.options.webhook_timeout / 2)
    # And longer than the known ~21 s stall after nats-server restarts (issue 16, item 5).
    stall_limit = max(ack_wait + 15.0, 45.0)
    deadline = time.monotonic() + settle
    last_change = time.monotonic()
    last: tuple[int, int] = (-1, -1)
    rows: dict[str, str] = {}
    ours = burst_ids(burst)
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            rows = await asyncio.wait_for(log.rows(subscription_id), 10)
        received = run.receiver.event_ids
        done = all(e in received for e in burst.acked) and all(e in rows for e in received if e in ours)
        state = (len(received), len(rows))
        if state != last:
            last, last_change = state, time.monotonic()
        if done:
            await asyncio.sleep(2.0)  # late duplicates
            with contextlib.suppress(Exception):
                rows = await asyncio.wait_for(log.rows(subscription_id), 10)
            return rows
        if time.monotonic() - last_change > stall_limit:
            run.notes.append(f"no progress for {stall_limit:g}s: stopped waiting")
            return rows
        await asyncio.sleep(1.0)
    run.notes.append(f"not quiescent within {settle:g}s")
    return rows


def _note_exits(run: Run) -> None:
    """Every process that exited by itself during the run, and when."""
    for name, proc in run.procs.items():
        for moment, code, last in proc.exits:
            when = ""
            if run.fault_at is not None:
                offset = moment - run.fault_at
                when = f" {abs(offset):.1f}s {'after' if offset >= 0 else 'before'} the fault"
            run.notes.append(f"{name} EXITED by itself (rc {code}){when}, not restarted: {last}")


def burst_ids(burst: Burst) -> set[str]:
    return set(burst.acked) | set(burst.refused)


async def _subscribe(run: Run) -> str:
    out = await run_cli(
        ["subscriptions", "create", "--name", "chaos", "--url", run.receiver.url, "--event-types", EVENT_TYPE],
        run.proc_env(),
    )
    created = json.loads(out[out.index("{") :])
    return str(created["id"])


async def run_scenario(scenario: Scenario, options: Options) -> Result:
    result = Result(scenario=scenario.name)
    root = Path(tempfile.mkdtemp(prefix=f"turbohooks-chaos-{scenario.name}-"))
    result.workdir = str(root)
    run = Run(scenario, options, root)
    run.data_dir.mkdir()
    run.env.update(
        {
            "WEBHOOK_ALLOW_HTTP": "true",
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "WEBHOOK_RETRY_SCHEDULE": RETRY_SCHEDULE,
            "WEBHOOK_TIMEOUT": f"{options.webhook_timeout:g}s",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "250",
            "NO_COLOR": "1",
            # Processes on separate "machines" (their own data dirs) share the secrets' key, as a
            # deployment must (docs/security.md): each would otherwise generate its own key file.
            "TURBOHOOKS_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
    )
    try:
        if scenario.tmpfs_mb is not None:
            mount = ["mount", "-t", "tmpfs", "-o", f"size={scenario.tmpfs_mb}m", "tmpfs", str(run.data_dir)]
            done = subprocess.run(mount, check=False, capture_output=True, text=True)
            if done.returncode != 0:
                result.verdict = "SKIPPED"
                result.notes.append(f"cannot mount a tmpfs ({done.stderr.strip()}): skipped")
                return result
            run.mounted = True
        await _setup_nats(run)
        run.env["NATS_URL"] = run.nats_url
        await _setup_database(run)
        await run.receiver.start()
        if scenario.nats == "up":
            run.procs["up"] = run.role("up")
            await run.procs["up"].start(60)
        subscription_id = await _subscribe(run)
        separate = scenario.nats == "cluster"
        for name in scenario.roles:
            data_dir = root / f"data-{name}" if separate else None
            if data_dir is not None:
                data_dir.mkdir()
            run.procs[name] = run.role(name, data_dir)
        await asyncio.gather(*(p.start() for n, p in run.procs.items() if n != "up"))
        workers = sum(1 for n in run.procs if n.startswith(("worker", "up")))
        settings = Settings(
            nats_url=run.nats_url,
            data_dir=root / "harness",
            stream_replicas=3 if separate else 1,
            publish_retry_horizon=scenario.retry_horizon or 60.0,
        )
        nc = await connect_nats(settings, name="turbohooks-chaos")
        try:
            await _wait_consumer(nc, uuid.UUID(subscription_id).hex, workers, 30)
            log = DeliveryLog(run.database_url)
            stop_sampling = asyncio.Event()
            sampler = asyncio.create_task(_sample_log(run, log, subscription_id, stop_sampling))
            burst = Burst(count=options.events, rate=options.rate)
            async with EventPublisher(settings, nc=nc, name="chaos") as publisher:
                await burst.run(publisher, 0.3, lambda: scenario.fault(run))
            rows = await _quiesce(run, burst, log, subscription_id)
            _note_exits(run)
            stop_sampling.set()
            await sampler
            with contextlib.suppress(Exception):
                info = await nc.jetstream(timeout=5).stream_info(STREAM)
                result.stream_messages = info.state.messages
        finally:
            await nc.close()
        _count(result, run, burst, rows)
    except Exception as exc:  # noqa: BLE001 -- an aborted scenario is reported, the next one runs
        result.verdict = "ERROR"
        result.notes.append(f"{type(exc).__name__}: {str(exc)[:600]}")
    finally:
        await _teardown(run)
        result.notes = run.notes + result.notes
        if result.verdict == "PASS" and not options.keep:
            shutil.rmtree(root, ignore_errors=True)
            result.workdir = ""
    return result


def _count(result: Result, run: Run, burst: Burst, rows: dict[str, str]) -> None:
    ours = burst_ids(burst)
    received = {e for e in run.receiver.event_ids if e in ours}
    result.published = burst.published
    result.acked = len(burst.acked)
    result.refused = len(burst.refused)
    result.received = len(received)
    result.in_log = len([e for e in rows if e in ours])
    result.lost = len([e for e in burst.acked if e not in received])
    result.missing_from_log = len([e for e in received if e not in rows])
    result.duplicates = run.receiver.requests - len(run.receiver.webhook_ids)
    result.resume = _resume(run, burst)
    statuses: dict[str, int] = {}
    for status in rows.values():
        statuses[status] = statuses.get(status, 0) + 1
    if any(s != "success" for s in statuses):
        run.notes.append("log statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    if burst.refused:
        sample = next(iter(burst.refused.values()))
        delivered = len([e for e in burst.refused if e in received])
        run.notes.append(
            f"{len(burst.refused)} publishes refused ({delivered} of them delivered anyway): {sample[:200]}"
        )
    if result.stream_messages is not None and result.stream_messages < result.acked:
        run.notes.append(f"the stream holds {result.stream_messages} messages, fewer than the {result.acked} acked")
    limit = run.scenario.resume_limit
    slow = limit is not None and (result.resume is None or result.resume > limit)
    if slow:
        run.notes.append(f"resume above the {limit:g}s promised")
    result.verdict = "PASS" if result.lost == 0 and result.missing_from_log == 0 and not slow else "FAIL"
