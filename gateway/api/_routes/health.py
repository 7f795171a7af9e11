"""``GET /health``: the process is alive. Public: its router carries no guard."""

from __future__ import annotations

from litestar import Router, get

from .._schemas import HealthStatus

__all__ = ("router",)


@get("/health", summary="The process is alive (no token needed)")
async def health() -> HealthStatus:
    return HealthStatus()


router = Router(path="/", tags=["health"], route_handlers=[health])
"""Public: no guard, no security requirement."""
