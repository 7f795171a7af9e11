"""The pieces of a fault run: the receiver, the product's processes, the burst, the counts.

Only stable interfaces are used: the ``turbohooks`` CLI as separate processes,
NATS, the gateway's HTTP API, the SQL database, and the public names of
``streams`` and ``publishers``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import random
import signal
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncpg  # type: ignore[import-untyped]
from aiohttp import web

from publishers import EventPublisher
from streams import PublishError, build_event

__all__ = (
    "ROOT",
    "TURBOHOOKS",
    "Burst",
    "DeliveryLog",
    "Proc",
    "Receiver",
    "free_port",
    "read_log",
    "run_cli",
)

ROOT: Final = Path(__file__).resolve().parents[2]
TURBOHOOKS: Final = str(Path(sys.executable).parent / "turbohooks")
"""The console script of the venv running the suite (``.venv/bin/turbohooks``)."""

EVENT_TYPE: Final = "comment.created"
"""The one type the suite publishes and subscribes to (nothing the scheduler derives)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """A real HTTP receiver on loopback that records every request's ``webhook-id`` and event id (``ce-id``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self.webhook_ids: set[str] = set()
        self.event_ids: set[str] = set()
        self.arrivals: list[float] = []
        """monotonic() of every request, in order."""
        self.first_seen: dict[str, float] = {}
        """event id → monotonic() of its first request."""
        self.slow: tuple[float, float] | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        self.arrivals.append(time.monotonic())
        self.webhook_ids.add(request.headers.get("webhook-id", ""))
        event_id = request.headers.get("ce-id", "")
        self.event_ids.add(event_id)
        self.first_seen.setdefault(event_id, self.arrivals[-1])
        if self.slow is not None:
            await asyncio.sleep(random.uniform(*self.slow))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Close the listening socket and every connection: requests are refused until :meth:`start`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def first_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first request after it, or None."""
        index = bisect.bisect_right(self.arrivals, moment)
        return self.arrivals[index] - moment if index < len(self.arrivals) else None


class Proc:
    """One product process (``turbohooks <role>``) in its own session, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path, ready: str) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log = log
        self.ready = ready
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.exits: list[tuple[float, int, str]] = []
        """(monotonic(), return code, last line of output) of every exit not asked for."""
        self._expected_exit = False
        self._watcher: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 40.0) -> None:
        """Start and wait for the ready line in its output."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts + 1} of {self.name}: {' '.join(self.args)}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                TURBOHOOKS,
                *self.args,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self._expected_exit = False
        self._watcher = asyncio.create_task(self._watch(self.process, offset))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = read_log(self.log, offset)
            if self.ready in text:
                return
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{text[-2000:]}")
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout:g}s:\n{read_log(self.log, offset)[-2000:]}")

    async def _watch(self, process: asyncio.subprocess.Process, offset: int) -> None:
        code = await process.wait()
        if not self._expected_exit:
            lines = [line for line in read_log(self.log, offset).splitlines() if line.strip()]
            self.exits.append((time.monotonic(), code, lines[-1][:300] if lines else ""))

    def kill9(self) -> None:
        """SIGKILL the whole process group (the process and any child it started), as a crash would."""
        if self.process is not None and self.process.returncode is None:
            self._expected_exit = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def wait_dead(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL the group."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        self._expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            self.kill9()
            await self.wait_dead()


def read_log(path: Path, offset: int = 0) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


async def run_cli(args: list[str], env: Mapping[str, str], timeout: float = 60.0) -> str:
    """Run one ``turbohooks`` command to its end; its stdout, or RuntimeError with its output."""
    process = await asyncio.create_subprocess_exec(
        TURBOHOOKS,
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"turbohooks {' '.join(args)}: no end within {timeout:g}s") from None
    if process.returncode != 0:
        raise RuntimeError(f"turbohooks {' '.join(args)} exited {process.returncode}: {err.decode()}{out.decode()}")
    return out.decode()


@dataclass
class Burst:
    """``count`` events at ``rate`` per second through :class:`EventPublisher`, every outcome kept."""

    count: int
    rate: float
    published: int = 0
    acked: dict[str, int] = field(default_factory=dict)
    """event id → stream sequence, for every publish JetStream acknowledged."""
    sent_at: dict[str, float] = field(default_factory=dict)
    """event id → monotonic() when its publish began."""
    refused: dict[str, str] = field(default_factory=dict)
    """event id → the error the publisher raised."""
    started: float = 0.0
    ended: float = 0.0

    async def run(
        self, publisher: EventPublisher, at_fraction: float, fault: Callable[[], Coroutine[object, object, None]] | None
    ) -> None:
        """Publish; when ``at_fraction`` of the events are sent, start ``fault`` (it runs alongside)."""
        in_flight = asyncio.Semaphore(4_000)
        tasks: set[asyncio.Task[None]] = set()
        fault_task: asyncio.Task[None] | None = None
        self.started = time.monotonic()
        fault_at = int(self.count * at_fraction)

        async def one(index: int) -> None:
            event = build_event(
                event_type=EVENT_TYPE,
                entity_id=f"chaos-{index}",
                data={"current": {"id": index, "body": f"comment {index} of the fault suite"}},
            )
            key = str(event.event_id)
            self.sent_at[key] = time.monotonic()
            try:
                ack = await publisher.publish(event)
            except PublishError as exc:
                self.refused[key] = str(exc)
            except Exception as exc:  # noqa: BLE001 -- a fault may surface any error; it is counted, not hidden
                self.refused[key] = f"{type(exc).__name__}: {exc}"
            else:
                self.acked[key] = ack.seq
            finally:
                in_flight.release()

        for index in range(self.count):
            if index == fault_at and fault is not None:
                fault_task = asyncio.create_task(fault())
            delay = self.started + index / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            task = asyncio.create_task(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.published += 1
        if tasks:
            await asyncio.gather(*tasks)
        self.ended = time.monotonic()
        if fault_task is not None:
            await fault_task


class DeliveryLog:
    """The delivery log read straight from the SQL database (SQLite file or PostgreSQL)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    async def rows(self, subscription_id: str) -> dict[str, str]:
        """event id → status of every row of the subscription."""
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[1]
            return await asyncio.to_thread(self._sqlite_rows, path, uuid.UUID(subscription_id).hex)
        dsn = self.url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncio.wait_for(asyncpg.connect(dsn), 10)
        try:
            records = await connection.fetch(
                "SELECT event_id, status FROM webhook_deliveries WHERE subscription_id = $1",
                uuid.UUID(subscription_id),
            )
        finally:
            await connection.close()
        return {str(r["event_id"]): str(r["status"]) for r in records}

    @staticmethod
    def _sqlite_rows(path: str, subscription_hex: str) -> dict[str, str]:
        if not Path(path).exists():
            return {}
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            cursor = connection.execute(
                "SELECT event_id, status FROM webhook_deliveries WHERE subscription_id = ?", (subscription_hex,)
            )
            return {str(uuid.UUID(str(e))): str(s) for e, s in cursor.fetchall()}
        finally:
            connection.close()

    async def count(self, subscription_id: str) -> int | None:
        """Rows of the subscription, or None when the database does not answer now."""
        try:
            return len(await asyncio.wait_for(self.rows(subscription_id), 5))
        except (OSError, TimeoutError, sqlite3.Error, asyncpg.PostgresError):
            return None
