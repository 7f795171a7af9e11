"""The traffic: the ~1 KiB events sent, the receiver they reach, and bursts and paced runs timed there."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import psutil

from streams import Event, build_event, encode_event

from ._processes import PYTHON, Children, wait_until
from ._results import percentile

__all__ = (
    "EVENT_SIZE",
    "Burst",
    "LatencyRun",
    "Receiver",
    "Stats",
    "measure_burst",
    "measure_paced",
    "sample_event",
    "sample_fields",
)

EVENT_SIZE: Final = 1024
"""Bytes of one encoded event (the issue's "~1 KiB events shaped like the envelope")."""


def sample_fields(event_type: str = "issue.updated", n: int = 0, padding: int | None = None) -> dict[str, Any]:
    """The keyword arguments of ``build_event``/``emit`` for a ~1 KiB event shaped like the design's envelope."""
    return {
        "event_type": event_type,
        "entity_id": f"ISS-{n}",
        "actor": {"type": "user", "name": "ada@example.com"},
        "context": {"project_id": "p-7d3f1c2a", "issue_id": f"ISS-{n}"},
        "data": {
            "current": {
                "id": f"ISS-{n}",
                "title": "Login fails with a 500 when the password contains a quote",
                "status": "in_progress",
                "priority": "high",
                "assignee": "grace@example.com",
                "labels": ["bug", "auth", "backend"],
                "description": "x" * (_padding() if padding is None else padding),
            },
            "previous": {"status": "open", "assignee": None},
            "changes": ["status", "assignee"],
        },
    }


_PAD: list[int] = []


def _padding() -> int:
    if not _PAD:
        bare = len(encode_event(build_event(**sample_fields(padding=0))))
        _PAD.append(max(0, EVENT_SIZE - bare))
    return _PAD[0]


def sample_event(event_type: str = "issue.updated", n: int = 0) -> Event:
    """A ~1 KiB event shaped like the design's envelope, timestamped now."""
    return build_event(**sample_fields(event_type, n))


# -- the receiver -------------------------------------------------------------------------------


@dataclass
class Stats:
    count: int
    unique: int
    signed: int
    first: float
    last: float
    kinds: list[int] = field(default_factory=lambda: [0, 0, 0])
    """Distinct deliveries to ``/p/<n>`` paths per kind: answered, 500, timing out."""


class Receiver:
    """The minimal receiver process, and the driver's view of it."""

    def __init__(self, process: asyncio.subprocess.Process, ports: list[int], session: aiohttp.ClientSession) -> None:
        self.process = process
        self.port = ports[0]
        self.ports = ports
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/hook"
        self._session = session

    def path_url(self, n: int) -> str:
        """The URL of per-path receiver ``n`` (see ``_receiver``'s profile), its port one of ``ports`` in turn."""
        return f"http://127.0.0.1:{self.ports[n % len(self.ports)]}/p/{n}"

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, children: Children, max_seconds: float, *, ports: int = 1) -> AsyncIterator[Receiver]:
        process = await children.start(
            PYTHON,
            "-m",
            "benchmarks._receiver",
            "--max-seconds",
            str(max_seconds),
            "--ports",
            str(ports),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        if not line.startswith(b"READY "):
            raise RuntimeError(f"benchmarks: the receiver did not start ({line!r})")
        # Generous: a load run's samples are ~100,000 arrivals long.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            try:
                yield cls(process, [int(word) for word in line.split()[1:]], session)
            finally:
                await children.stop(process)

    async def profile(self, **params: float) -> None:
        """Set the per-path behaviour (``mean``, ``jitter`` ms; ``timeout``, ``error`` shares; ``hang`` s; ``seed``)."""
        query = "&".join(f"{key}={value}" for key, value in params.items())
        async with self._session.post(f"{self.base}/_bench/profile?{query}") as response:
            response.raise_for_status()

    async def path_samples(self, start: int = 0) -> list[tuple[float, float, int, int]]:
        """(arrival, latency ms or NaN, path, kind) of every request from index ``start``."""
        async with self._session.get(f"{self.base}/_bench/samples?from={start}") as response:
            data = await response.json()
        latencies = [math.nan if v is None else v for v in data["latency_ms"]]
        return list(zip(data["arrivals"], latencies, data["path"], data["kind"], strict=True))

    async def stats(self) -> Stats:
        async with self._session.get(f"{self.base}/_bench/stats") as response:
            data = await response.json()
        return Stats(**data)

    async def samples(self, start: int = 0) -> tuple[list[float], list[float]]:
        """Arrival times and latencies (ms; NaN when the body had no timestamp) from index ``start``."""
        async with self._session.get(f"{self.base}/_bench/samples?from={start}") as response:
            data = await response.json()
        return data["arrivals"], [math.nan if v is None else v for v in data["latency_ms"]]

    async def reset(self) -> None:
        async with self._session.post(f"{self.base}/_bench/reset") as response:
            response.raise_for_status()

    async def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until nothing arrived for ``quiet`` seconds, then reset."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            count = (await self.stats()).count
            if count == last:
                break
            last = count
            await asyncio.sleep(quiet)
        await self.reset()

    async def await_ready(self, publish_probe: Callable[[], Awaitable[None]], timeout: float = 30.0) -> bool:
        """Publish probes until one arrives (the consumer under test is up), then settle and reset."""
        await self.reset()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await publish_probe()
            for _ in range(10):
                await asyncio.sleep(0.05)
                if (await self.stats()).count:
                    await self.settle()
                    return True
        return False


# -- end-to-end measurements shared by the peers and the product --------------------------------


@dataclass
class Burst:
    """A burst of ``sent`` events, measured at the receiver."""

    sent: int
    delivered: int
    rate: float
    """Deliveries per second between the first and the last arrival."""
    elapsed: float
    complete: bool
    arrivals: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds each watched process used while deliveries were arriving."""
    cpu_window: tuple[int, float] = (0, 0.0)
    """(deliveries, seconds) of the window over which ``cpu`` was measured."""

    def cpu_share(self, name: str) -> float | None:
        """Share of one core ``name`` used during the window."""
        seconds = self.cpu_window[1]
        return self.cpu[name] / seconds if name in self.cpu and seconds > 0 else None

    def cpu_per_delivery_us(self, name: str) -> float | None:
        count = self.cpu_window[0]
        return self.cpu[name] / count * 1e6 if name in self.cpu and count > 0 else None


def _cpu_seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


async def measure_burst(
    receiver: Receiver,
    start: Callable[[], Coroutine[Any, Any, None]],
    sent: int,
    *,
    limit: float,
    expected: int | None = None,
    watch: Callable[[], dict[str, int]] | None = None,
) -> Burst:
    """Run ``start`` (which makes ``sent`` events flow) and time the deliveries, for at most ``limit`` seconds.

    Stops early once ``expected`` arrived, or when 99 % did and nothing more came for a second (an event
    stuck with a consumer that went away comes back only after ``ack_wait``). ``watch`` names processes
    (name → pid) whose CPU time is measured from the first poll that saw deliveries to the last one that did.
    """
    expected = expected if expected is not None else sent
    await receiver.reset()
    task = asyncio.create_task(start())
    started = time.monotonic()
    stats = await receiver.stats()
    progress = (stats.count, started)
    first: tuple[int, float, dict[str, float]] | None = None
    last: tuple[int, float, dict[str, float]] | None = None

    def snapshot(count: int, now: float) -> tuple[int, float, dict[str, float]]:
        pids = watch() if watch is not None else {}
        cpu = {name: seconds for name, pid in pids.items() if (seconds := _cpu_seconds(pid)) is not None}
        return count, now, cpu

    try:
        while time.monotonic() - started < limit:
            await asyncio.sleep(0.1)
            stats = await receiver.stats()
            now = time.monotonic()
            if stats.count and stats.count != progress[0]:
                if first is None:
                    first = snapshot(stats.count, now)
                else:
                    last = snapshot(stats.count, now)
            if stats.count >= expected:
                break
            if stats.count != progress[0]:
                progress = (stats.count, now)
            elif stats.count >= 0.99 * expected and now - progress[1] > 1.0:
                break
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    arrivals, _ = await receiver.samples()
    span = stats.last - stats.first
    rate = (stats.count - 1) / span if stats.count > 1 and span > 0 else 0.0
    burst = Burst(sent, stats.count, rate, time.monotonic() - started, stats.count >= expected, arrivals)
    if first is not None and last is not None:
        burst.cpu = {name: last[2][name] - first[2][name] for name in last[2] if name in first[2]}
        burst.cpu_window = (last[0] - first[0], last[1] - first[1])
    return burst


@dataclass
class LatencyRun:
    """Events offered at a fixed rate; latencies from the event's timestamp to its arrival."""

    offered: float
    sent: int
    delivered: int
    latencies: list[float]
    """Of the events that arrived (ms)."""

    def quantile(self, p: float) -> float:
        """Over every event sent: one that never arrived counts as infinitely late."""
        missing = max(0, self.sent - len(self.latencies))
        return percentile(self.latencies + [math.inf] * missing, p)

    @property
    def p50(self) -> float:
        return self.quantile(50)

    @property
    def p95(self) -> float:
        return self.quantile(95)

    @property
    def p99(self) -> float:
        return self.quantile(99)


async def measure_paced(
    receiver: Receiver, fire: Callable[[int], None], rate: float, count: int, *, drain: float = 5.0
) -> LatencyRun:
    """Call ``fire(i)`` ``count`` times at ``rate`` per second (it must not block), then collect latencies."""
    await receiver.reset()
    period = 1.0 / rate
    started = time.monotonic()
    for i in range(count):
        delay = started + i * period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        fire(i)
    offered = count / max(time.monotonic() - started, 1e-9)

    async def all_in() -> bool:
        return (await receiver.stats()).count >= count

    await wait_until(all_in, timeout=drain, interval=0.1)
    _, latencies = await receiver.samples()
    kept = [v for v in latencies if not math.isnan(v)]
    return LatencyRun(offered, count, len(latencies), kept)
