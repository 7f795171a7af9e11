"""`turbohooks receive`: a local webhook receiver, to see deliveries while trying turbohooks out.

It answers every ``POST`` (200 unless ``--status``), prints one line per
request, and checks the Standard Webhooks signature as a real receiver would:
with ``--secret``, or else with the secrets of the subscriptions (in this
data dir's database) whose URL points at it.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from integrations.core import SignatureError, verify

from ._common import console, fail, load_settings, run

if TYPE_CHECKING:
    from aiohttp import web

    from consumers import SubscriptionStore

__all__ = ("receive",)

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_SHOWN = 160
"""Characters of a body printed (the whole body is what the receiver got; this is a glance)."""


async def _secrets_for(store: SubscriptionStore | None, host: str, port: int, path: str) -> list[tuple[str, list[str]]]:
    """(name, secrets) of every subscription delivering to this receiver's ``path``."""
    if store is None:
        return []
    found = []
    for sub in await store.list(limit=1000):
        parts = urlsplit(sub.url)
        here = parts.hostname in _LOOPBACK | {host} and (parts.port or 80) == port
        if here and (parts.path or "/") == path:
            found.append((sub.name, [s for s in (sub.secret, sub.previous_secret) if s]))
    return found


async def _check(
    request: web.Request, body: bytes, given: list[str], store: SubscriptionStore | None, host: str, port: int
) -> str:
    """What the receiver can say of the request's signature, in a few words."""
    if given:
        candidates = [("--secret", given)]
    else:
        candidates = await _secrets_for(store, host, port, request.path)
        if not candidates:
            return "[yellow]signature not checked[/yellow] (no subscription delivers here; --secret checks one)"
    for name, secrets in candidates:
        try:
            verify(secrets, dict(request.headers), body)
        except SignatureError:
            continue
        return f"[green]signature ok[/green] ({name})"
    return "[red]signature BAD[/red]"


def receive(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 9000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="Check signatures with this whsec_ secret (repeatable).")
    ] = None,
    status: Annotated[int, typer.Option("--status", min=100, max=599, help="The status to answer.")] = 200,
) -> None:
    """A local webhook receiver: prints each delivery and checks its signature (Ctrl-C stops it)."""
    from aiohttp import web

    settings = load_settings()
    given = list(secret or [])

    async def main() -> None:
        from consumers import Database, SubscriptionStore
        from consumers.secrets import Keyring

        store: SubscriptionStore | None = None
        database: Database | None = None
        if not given:
            database = Database(settings.resolved_database_url())
            await database.__aenter__()
            # The secrets are encrypted at rest: the data dir's key (or TURBOHOOKS_SECRET_KEY) reads them.
            store = SubscriptionStore(database, Keyring.from_settings(settings))

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            event = request.headers.get("X-Turbo-Event", "-")
            verdict = await _check(request, body, given, store, host, port)
            text = body.decode("utf-8", errors="replace")
            glance = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
            console.print(
                f"{datetime.now():%H:%M:%S} {request.method} {request.path} [bold]{event}[/bold] "
                f"{request.headers.get('webhook-id', '-')} {verdict} → {status}",
                highlight=False,
                soft_wrap=True,
            )
            console.print(glance, highlight=False, markup=False, soft_wrap=True)
            return web.Response(status=status, text=f"received by turbohooks receive ({status})\n")

        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                fail(f"cannot listen on {host}:{port} ({exc.strerror}); choose another with --port")
            console.print(
                f"receiving webhooks on [bold]http://{host}:{port}/[/bold] (any path); Ctrl-C stops it",
                soft_wrap=True,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()
            if database is not None:
                await database.__aexit__(None, None, None)
        console.print("stopped")

    run(main)
