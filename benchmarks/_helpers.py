"""What the benchmark groups share: scale, results, child processes, servers, events, the receiver."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import math
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import aiohttp
import psutil
from nats.aio.client import Client as NATS

import nats
from streams import DEFAULT_CONFIG, EmbeddedNats, Event, Settings, build_event, encode_event

__all__ = (
    "PYTHON",
    "ROOT",
    "TURBOHOOKS",
    "Burst",
    "Children",
    "Figure",
    "LatencyRun",
    "Receiver",
    "Results",
    "Scale",
    "Target",
    "bench_settings",
    "child_env",
    "connect",
    "cpu_and_rss",
    "measure_burst",
    "measure_paced",
    "nats_server",
    "peak_rss",
    "percentile",
    "sample_event",
    "sample_fields",
    "wait_until",
)

ROOT: Final = Path(__file__).resolve().parent.parent
PYTHON: Final = sys.executable
TURBOHOOKS: Final = Path(sys.executable).parent / "turbohooks"
EVENT_SIZE: Final = 1024
"""Bytes of one encoded event (the issue's "~1 KiB events shaped like the envelope")."""

T = TypeVar("T")
Op = Literal[">=", "<=", "<"]


# -- scale and results --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Counts and durations, smaller in ``--quick`` mode."""

    quick: bool

    def pick(self, quick: T, full: T) -> T:
        return quick if self.quick else full


@dataclass
class Figure:
    """One measured number."""

    key: str
    group: str
    label: str
    value: float | None
    unit: str
    ref: str | None = None
    """The ceiling or peer (a figure key) this one is quoted against, as a ratio."""
    note: str = ""


@dataclass
class Target:
    """A goal of the issue: ``value op threshold``, or ``value / ref op threshold`` when ``ref`` is set."""

    label: str
    key: str
    op: Op
    threshold: float
    ref: str | None = None
    scale_note: str = ""
    """Set when the figure was measured at a smaller scale than the target speaks of."""


@dataclass
class Results:
    """Everything one run measured, in order."""

    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What could not be measured, and why; caveats."""
    series: dict[str, Any] = field(default_factory=dict)
    """Raw data for the plots."""
    profile: list[str] = field(default_factory=list)
    """Lines of the worker's profile (``--profile``)."""

    def add(
        self,
        key: str,
        group: str,
        label: str,
        value: float | None,
        unit: str,
        *,
        ref: str | None = None,
        note: str = "",
    ) -> Figure:
        figure = Figure(key, group, label, value, unit, ref, note)
        self.figures[key] = figure
        shown = "n/a" if value is None else f"{value:,.2f}"
        print(f"  {label}: {shown} {unit}" + (f" ({note})" if note else ""), flush=True)
        return figure

    def value(self, key: str) -> float | None:
        figure = self.figures.get(key)
        return None if figure is None else figure.value

    def ratio(self, key: str, ref: str) -> float | None:
        value, base = self.value(key), self.value(ref)
        if value is None or base is None or base == 0:
            return None
        return value / base

    def target(
        self, label: str, key: str, op: Op, threshold: float, *, ref: str | None = None, scale_note: str = ""
    ) -> None:
        self.targets.append(Target(label, key, op, threshold, ref, scale_note))

    def check(self, target: Target) -> tuple[float | None, bool | None]:
        """The compared quantity and whether it meets the target (None: not measured)."""
        measured = self.ratio(target.key, target.ref) if target.ref else self.value(target.key)
        if measured is None or math.isnan(measured):
            return None, None
        if target.op == ">=":
            return measured, measured >= target.threshold
        if target.op == "<=":
            return measured, measured <= target.threshold
        return measured, measured < target.threshold


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    if fraction == 0 or ordered[high] == ordered[low]:
        return ordered[low]
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


async def wait_until(condition: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``timeout``; whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


# -- child processes ----------------------------------------------------------------------------


@functools.cache
def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` giving the child SIGKILL when the benchmark dies (even by SIGKILL).

    libc is loaded here, in the parent: the child, forked from a process with threads, only calls it.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:  # pragma: no cover - runs in the child
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return preexec


_WATCHDOG: Final = """
import os, signal, sys
pids = set()
for line in sys.stdin:
    word, _, arg = line.strip().partition(" ")
    if word == "add":
        pids.add(int(arg))
    elif word == "remove":
        pids.discard(int(arg))
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""
"""Kills the processes it was told about once its stdin closes: when the benchmark dies, even by SIGKILL."""


class Children:
    """Every process a benchmark starts; all are stopped on exit (SIGTERM, then SIGKILL), even on error.

    Children started here die with the benchmark (Linux ``PR_SET_PDEATHSIG``); processes started by
    others (the embedded nats-server) are handed to a watchdog with :meth:`guard`.
    """

    def __init__(self) -> None:
        self._processes: list[asyncio.subprocess.Process] = []
        self._watchdog: asyncio.subprocess.Process | None = None

    async def start(
        self, *args: str, env: dict[str, str] | None = None, stdout: int = asyncio.subprocess.DEVNULL
    ) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=stdout,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )
        self._processes.append(process)
        return process

    async def guard(self, pid: int | None, *, release: bool = False) -> None:
        """Have the watchdog kill ``pid`` if the benchmark dies; ``release`` once it was stopped normally."""
        watchdog = self._watchdog
        if pid is None or watchdog is None or watchdog.stdin is None or watchdog.returncode is not None:
            return
        watchdog.stdin.write(f"{'remove' if release else 'add'} {pid}\n".encode())
        with contextlib.suppress(ConnectionError):
            await watchdog.stdin.drain()

    async def stop(self, process: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process in self._processes:
            self._processes.remove(process)

    async def __aenter__(self) -> Children:
        self._watchdog = await asyncio.create_subprocess_exec(
            PYTHON,
            "-c",
            _WATCHDOG,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(self.stop(p, 5.0) for p in list(self._processes)))
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.stdin is not None:
            watchdog.stdin.close()  # everything it guards was stopped: it kills nothing that is gone
            try:
                await asyncio.wait_for(watchdog.wait(), 5)
            except TimeoutError:
                watchdog.kill()
                await watchdog.wait()


# -- NATS and the engine's settings -------------------------------------------------------------


@contextlib.asynccontextmanager
async def nats_server(workdir: Path, children: Children, config: Path = DEFAULT_CONFIG) -> AsyncIterator[EmbeddedNats]:
    """A fresh nats-server with JetStream, a temporary store, ``nats/dev.conf`` by default, on a free port."""
    async with EmbeddedNats(store_dir=workdir / "jetstream", port=None, config=config) as server:
        pid = server.pid
        await children.guard(pid)
        try:
            yield server
        finally:
            await server.stop()
            await children.guard(pid, release=True)


def bench_settings(url: str, data_dir: Path) -> Settings:
    """Settings of the engine under test: loopback receivers allowed, everything else default."""
    return Settings(
        nats_url=url,
        data_dir=data_dir,
        stream_max_bytes=4 << 30,
        webhook_allow_http=True,
        webhook_allowed_hosts=("127.0.0.1",),
    )


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``turbohooks`` process started by a benchmark, matching ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "TURBOHOOKS_", "WEBHOOK_", "DATABASE_"))}
    env.update(
        NATS_URL=settings.resolved_nats_url(),
        TURBOHOOKS_DATA_DIR=str(settings.data_dir),
        TURBOHOOKS_STREAM_MAX_BYTES=str(settings.stream_max_bytes),
        WEBHOOK_ALLOW_HTTP="true",
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        TURBOHOOKS_LOG_LEVEL="ERROR",
    )
    return env


async def connect(url: str, name: str = "bench") -> NATS:
    """A plain nats-py connection (the ceilings use no turbohooks code)."""
    return await nats.connect(url, name=name, connect_timeout=2, max_reconnect_attempts=3)


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


# -- process measurements -----------------------------------------------------------------------


async def cpu_and_rss(pid: int, seconds: float) -> tuple[float, float]:
    """Share of one core used by ``pid`` over ``seconds``, and its RSS at the end (MB)."""
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    after = proc.cpu_times()
    elapsed = time.monotonic() - started
    used = (after.user - before.user) + (after.system - before.system)
    return used / elapsed, proc.memory_info().rss / 1e6


@contextlib.asynccontextmanager
async def peak_rss(pid: int, interval: float = 0.1) -> AsyncIterator[list[tuple[float, float]]]:
    """Sample ``pid``'s RSS (monotonic time, MB) while the block runs."""
    proc = psutil.Process(pid)
    samples: list[tuple[float, float]] = []

    async def sample() -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                samples.append((time.monotonic(), proc.memory_info().rss / 1e6))
            await asyncio.sleep(interval)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the receiver -------------------------------------------------------------------------------


@dataclass
class Stats:
    count: int
    unique: int
    signed: int
    first: float
    last: float


class Receiver:
    """The minimal receiver process, and the driver's view of it."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/hook"
        self._session = session

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, children: Children, max_seconds: float) -> AsyncIterator[Receiver]:
        process = await children.start(
            PYTHON, "-m", "benchmarks._receiver", "--max-seconds", str(max_seconds), stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        if not line.startswith(b"READY "):
            raise RuntimeError(f"benchmarks: the receiver did not start ({line!r})")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            try:
                yield cls(process, int(line.split()[1]), session)
            finally:
                await children.stop(process)

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


def median(values: Iterator[float] | Sequence[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else math.nan
