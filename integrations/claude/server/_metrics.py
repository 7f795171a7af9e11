"""``turbohooks claude-server``'s Prometheus metrics: the requests it answered, by route and status."""

from __future__ import annotations

from prometheus_client import Counter

from streams import ProcessMetrics

__all__ = ("ClaudeServerMetrics",)


class ClaudeServerMetrics(ProcessMetrics):
    """The Claude server's metrics, in a registry of their own (one per :class:`ClaudeServer`)."""

    def __init__(self) -> None:
        super().__init__("claude-server")
        self.requests = Counter(
            "turbohooks_claude_requests",
            "Requests the Claude server answered, by method, route and status (202: a run queued; "
            "401: a bad signature; 400: not a Turbo event).",
            ("method", "route", "status"),
            registry=self.registry,
        )

    def request(self, method: str, route: str, status: int) -> None:
        """Count one answered request (``route`` is the template: ids do not become label values)."""
        self.requests.labels(method, route, str(status)).inc()
