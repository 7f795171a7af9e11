"""Connecting to NATS with the options every turbohooks process wants."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

import nats

from ._auth import ADMIN_ROLE, nats_auth_options
from ._errors import NatsUnavailableError
from ._tls import client_ssl_context
from .settings import Settings

__all__ = ("connect_nats",)

_log = logging.getLogger("turbohooks.nats")


async def _on_error(exc: Exception) -> None:
    # Every failed reconnect attempt lands here (4 a second while NATS is
    # down); the disconnect itself is logged once, below. A permissions
    # violation is a bug or an attack, never noise: it is said loudly.
    if "permissions violation" in str(exc).lower():
        _log.warning("nats: %s", exc)
        return
    _log.debug("nats: %s", exc)


async def _on_disconnect() -> None:
    _log.info("nats: disconnected")


async def _on_reconnect() -> None:
    _log.info("nats: reconnected")


async def connect_nats(
    settings: Settings,
    *,
    name: str = "turbohooks",
    url: str | None = None,
    timeout: float = 5.0,
    role: str = ADMIN_ROLE,
) -> NATS:
    """Connect as ``role``, reconnecting forever afterwards; raise :class:`NatsUnavailableError` if it cannot.

    ``role`` (one of :data:`streams.NATS_ROLES`) picks the embedded server's
    generated user and the reply-inbox prefix; explicit credentials
    (``NATS_USER``, ``NATS_CREDS``, ``NATS_NKEY_SEED``) and TLS settings win
    (see :func:`streams._auth.nats_auth_options`, :func:`streams._tls.client_ssl_context`).
    """
    server = url or settings.resolved_nats_url()
    options = nats_auth_options(settings, role)
    tls = client_ssl_context(settings)
    if tls is not None:
        options["tls"] = tls
        if server.startswith("nats://") and settings.nats_url is None:
            server = "tls://" + server.removeprefix("nats://")
    # nats-py retries a failed first connect through error_cb: the last error
    # seen says why (refused credentials, a certificate not trusted).
    seen: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        # The first refusal says most: after it the server only resets the retries.
        if not seen or not _telling(seen[0]):
            seen[:] = [exc]
        await _on_error(exc)

    try:
        # With reconnects unbounded, nats-py would also retry the first connect
        # forever; a CLI user wants to hear at once that nothing answers.
        return await asyncio.wait_for(_connect(server, name, {"error_cb": on_error, **options}), timeout)
    except (OSError, TimeoutError, NatsError) as exc:
        cause: BaseException = seen[-1] if seen else exc
        hint = "is `turbohooks up` running?" if settings.nats_url is None else "check NATS_URL"
        detail = f"{type(cause).__name__}: {cause}" if str(cause) else f"no answer within {timeout:g}s"
        if "authorization" in detail.lower():
            hint = f"NATS refused the credentials of role {role}; check NATS_USER/NATS_PASSWORD/NATS_CREDS"
        elif isinstance(cause, ssl.SSLError) or "tls" in detail.lower() or "certificate" in detail.lower():
            hint = "TLS failed; check NATS_TLS_CA (the server's CA) and NATS_TLS_CERT/NATS_TLS_KEY (the client's)"
        raise NatsUnavailableError(f"turbohooks: cannot reach NATS at {server} ({detail}); {hint}") from exc


def _telling(exc: BaseException) -> bool:
    """Whether a connect error says why (refused credentials, a TLS failure) rather than only that it failed."""
    text = str(exc).lower()
    return isinstance(exc, ssl.SSLError) or "authorization" in text or "certificate" in text


async def _connect(server: str, name: str, options: dict[str, Any]) -> NATS:
    return await nats.connect(
        server,
        name=name,
        **options,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        disconnected_cb=_on_disconnect,
        reconnected_cb=_on_reconnect,
    )
