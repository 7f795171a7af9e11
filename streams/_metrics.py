"""Prometheus metrics shared by every process: a registry per process object, one exposition, a tiny server.

* :class:`ProcessMetrics` is the base of each role's metrics object (worker,
  recorder, scheduler, gateway, claude-server): its own ``CollectorRegistry``
  (never the process-global one, so two roles in one process, as in
  ``turbohooks up``, or a test suite, never mix their numbers), and the two
  families every role has: ``turbohooks_process_start_time_seconds`` and
  ``turbohooks_build_info``.
* :func:`exposition` renders several registries as one valid text exposition:
  every sample gets a ``process`` label (the role), and a family several roles
  have (the two above) is written once, with one HELP and one TYPE line. A
  process run alone renders ``{its role: its registry}``, so a query reads the
  same whether the roles run in one ``up`` or apart.
* :class:`MetricsServer` serves ``GET /metrics`` with ``asyncio.start_server``:
  a worker may load no web framework (the import contracts), and a thread
  (``prometheus_client.start_http_server``) would outlive the process's
  context managers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Final, Self

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ._version import VERSION

__all__ = ("CONTENT_TYPE", "MetricsServer", "ProcessMetrics", "exposition")

_log = logging.getLogger("turbohooks.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus version reads."""
_READ_TIMEOUT: Final = 5.0
_CREATED_TYPES: Final = frozenset({"counter", "histogram", "summary"})


class ProcessMetrics:
    """A role's metrics: a registry of its own, with the process's start time and build info."""

    def __init__(self, process: str) -> None:
        self.process = process
        """The role's name: the ``process`` label of its samples."""
        self.registry = CollectorRegistry()
        Gauge(
            "turbohooks_process_start_time_seconds",
            "When the process's role started (Unix time); a role not reporting is missing it.",
            registry=self.registry,
        ).set(time.time())
        Gauge(
            "turbohooks_build_info", "Always 1; the turbohooks version.", ("version",), registry=self.registry
        ).labels(VERSION).set(1)

    def render(self) -> bytes:
        """This role's registry in the text format, each sample labelled ``process=<role>``."""
        return exposition({self.process: self.registry})


class _Merged(Collector):
    """The families of several registries, one family per name, each sample labelled with its process."""

    def __init__(self, parts: Mapping[str, CollectorRegistry]) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for process, registry in self._parts.items():
            for family in registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                elif merged.type != family.type:
                    # Two roles disagreeing on a family's type is a programming error; a valid exposition
                    # cannot hold both, so the first wins and the mistake is logged.
                    _log.error(
                        "metrics: %s is a %s and a %s; %s's dropped", family.name, merged.type, family.type, process
                    )
                    continue
                # Counters' `_created` samples double the series for a start time Prometheus does not need.
                created = f"{family.name}_created" if family.type in _CREATED_TYPES else None
                merged.samples.extend(
                    sample._replace(labels={"process": process, **sample.labels})
                    for sample in family.samples
                    if sample.name != created
                )
        yield from families.values()


def exposition(parts: Mapping[str, CollectorRegistry]) -> bytes:
    """``parts`` (role → registry) as one text exposition: no family twice, a ``process`` label on every sample."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(parts))
    return generate_latest(registry)


class MetricsServer:
    """``GET /metrics`` on ``host:port`` (port 0: a free one, see :attr:`port`), answered by ``render``.

    An async context manager: listening inside it, closed on exit. Anything but
    ``GET``/``HEAD /metrics`` is a 404 or 405; one request per connection.
    """

    def __init__(self, render: Callable[[], bytes], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._render = render
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Where the metrics are, once listening."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def __aenter__(self) -> Self:
        try:
            self._server = await asyncio.start_server(self._answer, self.host, self.port)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics: cannot listen on {self.host}:{self.port} ({exc.strerror})") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if path != b"/metrics":
                status, body, kind = "404 Not Found", b"not found: the metrics are at /metrics\n", "text/plain"
            elif method not in (b"GET", b"HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
            else:
                status, body, kind = "200 OK", self._render(), CONTENT_TYPE
            head_out = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head_out if method == b"HEAD" else head_out + body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the scraper went away: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
