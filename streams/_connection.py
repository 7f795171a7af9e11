"""Connecting to NATS with the options every turbohooks process wants."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

import nats

from ._errors import NatsUnavailableError
from .settings import Settings

__all__ = ("connect_nats",)

_log = logging.getLogger("turbohooks.nats")


async def _on_error(exc: Exception) -> None:
    # Every failed reconnect attempt lands here (4 a second while NATS is
    # down); the disconnect itself is logged once, below.
    _log.debug("nats: %s", exc)


async def _on_disconnect() -> None:
    _log.info("nats: disconnected")


async def _on_reconnect() -> None:
    _log.info("nats: reconnected")


async def connect_nats(
    settings: Settings, *, name: str = "turbohooks", url: str | None = None, timeout: float = 5.0
) -> NATS:
    """Connect, reconnecting forever afterwards; raise :class:`NatsUnavailableError` if it cannot within ``timeout``."""
    server = url or settings.resolved_nats_url()
    try:
        # With reconnects unbounded, nats-py would also retry the first connect
        # forever; a CLI user wants to hear at once that nothing answers.
        return await asyncio.wait_for(_connect(server, name), timeout)
    except (OSError, TimeoutError, NatsError) as exc:
        hint = "is `turbohooks up` running?" if settings.nats_url is None else "check NATS_URL"
        raise NatsUnavailableError(
            f"turbohooks: cannot reach NATS at {server} ({str(exc) or f'no answer within {timeout:g}s'}); {hint}"
        ) from exc


async def _connect(server: str, name: str) -> NATS:
    return await nats.connect(
        server,
        name=name,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        error_cb=_on_error,
        disconnected_cb=_on_disconnect,
        reconnected_cb=_on_reconnect,
    )
