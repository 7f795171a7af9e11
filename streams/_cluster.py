"""A JetStream cluster of three nats-servers on loopback (``nats/cluster/``), run as child processes.

The shape of a production cluster on one machine: for ``turbohooks up`` with a
cluster, and for the fault suite (``python -m tests.chaos``), which stops and
starts single nodes while events flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from nats.errors import Error as NatsError

import nats

from ._errors import EmbeddedServerError
from ._server import find_nats_server, shipped_config

__all__ = ("CLUSTER_CONFIG_DIR", "ClusterNode", "NatsCluster")

CLUSTER_CONFIG_DIR: Final = shipped_config("cluster/common.conf").parent
"""``nats/cluster/`` (the wheel's copy, or the source tree's): ``node1.conf`` … ``node3.conf`` and ``common.conf``."""

_READY: Final = "Server is ready"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ClusterNode:
    """One nats-server of the cluster; its ports are chosen once and kept across restarts."""

    def __init__(
        self, *, index: int, host: str, port: int, route_port: int, store_dir: Path, config: Path | None
    ) -> None:
        self.index = index
        self.name = f"turbohooks-n{index + 1}"
        self.host = host
        self.port = port
        self.route_port = route_port
        self.store_dir = store_dir
        self.config = config
        self.log_file: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._tail: deque[str] = deque(maxlen=40)

    @property
    def url(self) -> str:
        """The ``nats://`` URL of this node's clients."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process and self._process.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    async def start(self, routes: list[str], timeout: float) -> None:
        """Start the server and wait until it accepts clients (the cluster may not have formed yet)."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [find_nats_server()]
        if self.config is not None and self.config.exists():
            args += ["-c", str(self.config)]
        # The command line wins over the file: ports, routes and store are per run.
        args += ["-js", "-sd", str(self.store_dir), "-a", self.host, "-p", str(self.port)]
        args += ["--server_name", self.name, "--cluster_name", "turbohooks"]
        args += ["--cluster", f"nats://{self.host}:{self.route_port}", "--routes", ",".join(routes)]
        self._process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        ready = asyncio.get_running_loop().create_future()
        self._drain = asyncio.create_task(self._read_log(self._process, ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except (TimeoutError, EmbeddedServerError):
            await self.stop()
            log = "\n".join(self._tail)
            raise EmbeddedServerError(f"turbohooks: nats-server {self.name} did not start:\n{log}") from None

    async def _read_log(self, process: asyncio.subprocess.Process, ready: asyncio.Future[None]) -> None:
        assert process.stderr is not None
        log = self.log_file.open("a", encoding="utf-8") if self.log_file else None
        try:
            async for raw in process.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self._tail.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                if _READY in line and not ready.done():
                    ready.set_result(None)
        finally:
            if log is not None:
                log.close()
            if not ready.done():
                ready.set_exception(EmbeddedServerError(f"nats-server {self.name} exited"))

    async def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL with ``kill``), wait, then SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, EmbeddedServerError):
                await self._drain
            self._drain = None


class NatsCluster:
    """Run a JetStream cluster of ``size`` nats-servers on loopback for as long as the context is open.

    Every node gets a client port and a route port chosen free at construction
    (kept when a node restarts, since the others' routes point at it) and its own
    store directory under ``store_root`` (a temporary directory when not given).
    ``start()`` returns once JetStream has a meta leader, so streams can be
    created at once. :meth:`stop_node` and :meth:`start_node` take one node down
    and back, on the same store, for the fault suite.

    Clients get every URL (:attr:`urls`, or :attr:`url` comma-joined); a client
    given one URL also learns the others from the server once connected.
    """

    def __init__(
        self,
        *,
        size: int = 3,
        store_root: Path | None = None,
        host: str = "127.0.0.1",
        config_dir: Path | None = CLUSTER_CONFIG_DIR,
        log_dir: Path | None = None,
        start_timeout: float = 30.0,
        first_port: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="turbohooks-cluster-")
            store_root = Path(self._tmp.name)
        self.store_root = store_root
        self.start_timeout = start_timeout
        self.nodes: list[ClusterNode] = []
        for index in range(size):
            config = config_dir / f"node{index + 1}.conf" if config_dir is not None else None
            node = ClusterNode(
                index=index,
                host=host,
                # Node 1 may take a known port (``turbohooks up --cluster``: the embedded port, so
                # commands in other terminals find the cluster as they find the single server).
                port=first_port if index == 0 and first_port is not None else _free_port(host),
                route_port=_free_port(host),
                store_dir=store_root / f"node{index + 1}",
                config=config,
            )
            if log_dir is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
                node.log_file = log_dir / f"nats-{node.name}.log"
            self.nodes.append(node)

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, node 1 first."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-joined (the form of ``NATS_URL`` for a cluster)."""
        return ",".join(self.urls)

    def _routes(self, node: ClusterNode) -> list[str]:
        return [f"nats-route://{o.host}:{o.route_port}" for o in self.nodes if o is not node]

    async def start(self) -> None:
        """Start every node and wait for the JetStream meta leader."""
        try:
            await asyncio.gather(*(n.start(self._routes(n), self.start_timeout) for n in self.nodes))
            await self.wait_ready(self.start_timeout)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every node (SIGTERM: each flushes its store) and remove a temporary store."""
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def stop_node(self, index: int, *, kill: bool = False) -> None:
        """Stop node ``index`` (0-based); ``kill`` sends SIGKILL, as a crash would."""
        await self.nodes[index].stop(kill=kill)

    async def start_node(self, index: int, *, wait: bool = True) -> None:
        """Start node ``index`` again on its store and ports; with ``wait``, until it serves JetStream."""
        node = self.nodes[index]
        await node.start(self._routes(node), self.start_timeout)
        if wait:
            await self._wait_node(node, self.start_timeout)

    async def wait_ready(self, timeout: float) -> None:
        """Wait until every running node answers JetStream requests (a meta leader exists)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.running:
                await self._wait_node(node, max(0.1, deadline - time.monotonic()))

    async def stream_leader(self, stream: str, timeout: float = 5.0) -> int | None:
        """The index of the node leading ``stream`` (its Raft group), or None when it has no leader."""
        names = {node.name: node.index for node in self.nodes}
        for node in self.nodes:
            if not node.running:
                continue
            try:
                nc = await nats.connect(node.url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
            except (OSError, TimeoutError, NatsError):
                continue
            try:
                info = await nc.jetstream(timeout=timeout).stream_info(stream)
            except (OSError, TimeoutError, NatsError):
                continue
            finally:
                await nc.close()
            leader = info.cluster.leader if info.cluster is not None else None
            return names.get(leader) if leader else None
        return None

    async def _wait_node(self, node: ClusterNode, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: str = "no answer"
        while time.monotonic() < deadline:
            try:
                nc = await nats.connect(node.url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
            except (OSError, TimeoutError, NatsError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.2)
                continue
            try:
                # Answered only once the node knows a meta leader; before that
                # it says JetStream is temporarily unavailable (or stays silent).
                await nc.jetstream(timeout=2).account_info()
                return
            except (OSError, TimeoutError, NatsError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                await nc.close()
            await asyncio.sleep(0.2)
        raise EmbeddedServerError(
            f"turbohooks: nats-server {node.name} did not serve JetStream within {timeout:g}s ({last})"
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
