"""``--metrics-port`` of the separately started processes: each serves its role's metrics on a port of its own.

``turbohooks up`` runs every role in one process and serves them all through
the gateway's ``/metrics``; a worker, recorder, scheduler or claude-server
started on its own serves its role's at ``http://<TURBOHOOKS_METRICS_HOST>:<port>/metrics``
when given a port (the option, else its role's ``TURBOHOOKS_*_METRICS_PORT``).
Off by default: two processes on one host would otherwise fight over a fixed port.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import typer

from streams import MetricsServer, ProcessMetrics
from streams.settings import MetricsSettings

from ._common import console, load_role

__all__ = ("MetricsPort", "metrics_port", "serve_metrics")

MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics on this port at /metrics (0: any free one); default: the role's "
        "TURBOHOOKS_*_METRICS_PORT, else off.",
        show_default=False,
    ),
]

_Role = Literal["worker", "recorder", "scheduler", "claude_server"]


def metrics_port(role: _Role, option: int | None) -> tuple[MetricsSettings, int | None]:
    """The metrics settings and the port ``role`` serves on: ``--metrics-port``, else its setting, else None."""
    settings = load_role(MetricsSettings)
    if option is not None:
        return settings, option
    return settings, getattr(settings, f"{role}_port")


@contextlib.asynccontextmanager
async def serve_metrics(
    metrics: ProcessMetrics, settings: MetricsSettings, port: int | None
) -> AsyncIterator[MetricsServer | None]:
    """Serve ``metrics`` on ``port`` while inside (nothing when ``port`` is None)."""
    if port is None:
        yield None
        return
    async with MetricsServer(metrics.render, host=settings.host, port=port) as server:
        console.print(f"{metrics.process} metrics on [bold]{server.url}[/bold]", soft_wrap=True)
        yield server
