"""What a benchmark starts: children that die with it, nats-server, the engine's settings, what a process uses."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final, TextIO

import psutil
from nats.aio.client import Client as NATS

import nats
from streams import DEFAULT_CONFIG, EmbeddedNats, Settings

__all__ = (
    "PYTHON",
    "ROOT",
    "TURBOHOOKS",
    "Children",
    "bench_settings",
    "child_env",
    "connect",
    "cpu_and_rss",
    "nats_server",
    "peak_rss",
    "wait_until",
)

ROOT: Final = Path(__file__).resolve().parent.parent
PYTHON: Final = sys.executable
TURBOHOOKS: Final = Path(sys.executable).parent / "turbohooks"


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


def _log_file(args: tuple[str, ...], index: int) -> int | TextIO:
    """``BENCH_LOGS=<dir>``: a child's stderr (the product's error logs) kept there, to diagnose a run."""
    logs = os.environ.get("BENCH_LOGS")
    if not logs:
        return asyncio.subprocess.DEVNULL
    Path(logs).mkdir(parents=True, exist_ok=True)
    name = "-".join(Path(arg).name for arg in args[:3] if not arg.startswith("-"))
    return open(Path(logs) / f"{name}-{index}.log", "a", encoding="utf-8")  # the child keeps its own copy


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
        stderr = _log_file(args, len(self._processes))
        process = await asyncio.create_subprocess_exec(
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=_die_with_parent(),
        )
        if not isinstance(stderr, int):
            stderr.close()  # the child has its own copy
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
