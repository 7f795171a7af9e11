"""`turbohooks up`: the whole product in one process, on embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer

from streams import DEFAULT_CONFIG, EmbeddedNats, Settings, connect_nats, provision

from ._common import console, load_settings, run

__all__ = ("register",)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _up(settings: Settings) -> None:
    async with contextlib.AsyncExitStack() as stack:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.nats_url is None:
            server = EmbeddedNats(
                store_dir=settings.data_dir / "jetstream",
                host=settings.nats_host,
                port=settings.nats_port,
                config=DEFAULT_CONFIG,
                log_file=settings.data_dir / "nats-server.log",
            )
            await stack.enter_async_context(server)
            console.print(f"nats-server (embedded, pid {server.pid}) on [bold]{server.url}[/bold]")
        else:
            console.print(f"using NATS at [bold]{settings.nats_url}[/bold]")
        nc = await connect_nats(settings, name="turbohooks-up")
        stack.push_async_callback(nc.close)
        infos = await provision(nc.jetstream(), settings)
        for info in infos:
            console.print(
                f"stream [bold]{info.config.name}[/bold] ready ({info.state.messages} messages, "
                f"{', '.join(info.config.subjects or [])})"
            )
        console.print("[green]turbohooks is up[/green]; Ctrl-C stops it")
        await _wait_for_signal()
        console.print("stopping…")


def up(
    nats_port: Annotated[
        int | None, typer.Option("--nats-port", help="Port of the embedded nats-server (TURBOHOOKS_NATS_PORT).")
    ] = None,
) -> None:
    """Run the embedded NATS (unless NATS_URL is set) and provision the streams."""
    settings = load_settings()
    if nats_port is not None:
        settings = Settings.from_env(nats_port=nats_port)
    run(lambda: _up(settings))


def register(app: typer.Typer) -> None:
    """Add `up` to ``app``."""
    app.command()(up)
