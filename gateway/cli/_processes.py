"""Long-running roles: `turbohooks up`, `worker`, `recorder`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Annotated

import typer

from consumers import Worker, ensure_env_subscriptions
from integrations import INTEGRATION_NAMES
from publishers import EventPublisher, MilestoneProcessor, Scheduler, SchedulerSettings
from streams import DEFAULT_CONFIG, ConfigError, EmbeddedNats, Settings, connect_nats, provision

from ._common import console, fail, freeze_heap, load_settings, run

__all__ = ("register",)


@contextlib.asynccontextmanager
async def _stop_on_signal() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM (graceful shutdown)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until_first_done(stop: asyncio.Event, *tasks: asyncio.Task[None]) -> None:
    """Wait for ``stop``; if a role task dies first, stop the others and re-raise its error."""
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    stopper.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


async def _up(settings: Settings, schedule: SchedulerSettings, host: str, port: int) -> None:
    # The gateway (Litestar) and the SQL side load here, not when the CLI
    # starts: a `turbohooks worker` process needs neither.
    from consumers import Recorder, open_engine
    from gateway import load_or_create_admin_token, serve_gateway

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
        engine = await stack.enter_async_context(open_engine(settings, name="up"))
        await engine.service.mirror()
        for sub in await ensure_env_subscriptions(engine.service):
            console.print(f"subscription [bold]{sub.name}[/bold] ({sub.integration}) from the environment → {sub.url}")
        for name in (settings.stream_name, "TURBOHOOKS_ATTEMPTS", "TURBOHOOKS_DLQ", "TURBOHOOKS_REDELIVER"):
            info = await engine.js.stream_info(name)
            console.print(f"stream [bold]{name}[/bold] ready ({info.state.messages} messages)")
        console.print(f"database {engine.db.url}")
        stop = await stack.enter_async_context(_stop_on_signal())
        worker = Worker(settings, engine.nc)
        recorder = Recorder(settings, engine.nc, engine.deliveries, engine.service)
        generators = await stack.enter_async_context(EventPublisher(settings, nc=engine.nc, name="generators"))
        token, created = load_or_create_admin_token(settings)
        listening = asyncio.Event()
        freeze_heap()

        def ready(url: str) -> None:
            console.print(f"gateway on [bold]{url}[/bold] (OpenAPI at {url}/schema)")
            if created:
                # The token itself only in its file (mode 0600): stdout ends up in logs.
                console.print(
                    f"admin token generated: read it from {settings.data_dir / 'admin-token'}", highlight=False
                )
            listening.set()

        tasks = [
            asyncio.create_task(
                serve_gateway(engine, host=host, port=port, admin_token=token, stop=stop, on_ready=ready),
                name="gateway",
            ),
            asyncio.create_task(worker.run(stop), name="worker"),
            asyncio.create_task(recorder.run(stop), name="recorder"),
            asyncio.create_task(Scheduler(generators, settings=schedule).run(stop), name="scheduler"),
            asyncio.create_task(MilestoneProcessor(generators).run(stop), name="milestones"),
        ]
        waiter = asyncio.create_task(listening.wait())
        await asyncio.wait({waiter, tasks[0]}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if listening.is_set():
            console.print(
                f"[green]turbohooks is up[/green]: gateway, worker ({', '.join(sorted(worker.kinds))}), recorder, "
                "scheduler and milestone processor running; Ctrl-C stops it"
            )
        await _until_first_done(stop, *tasks)
        console.print("stopped")


def up(
    port: Annotated[int, typer.Option("--port", help="Port of the gateway (admin API and UI).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address the gateway listens on.")] = "127.0.0.1",
    nats_port: Annotated[
        int | None, typer.Option("--nats-port", help="Port of the embedded nats-server (TURBOHOOKS_NATS_PORT).")
    ] = None,
) -> None:
    """Run everything: embedded NATS (unless NATS_URL is set), the gateway, worker, recorder and scheduler."""
    settings = load_settings()
    if nats_port is not None:
        settings = Settings.from_env(nats_port=nats_port)
    try:
        schedule = SchedulerSettings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)
    run(lambda: _up(settings, schedule, host, port))


def worker(
    integration: Annotated[
        list[str] | None,
        typer.Option(
            "--integration", help=f"Integration kind(s) to run: {', '.join(INTEGRATION_NAMES)}. Default: all."
        ),
    ] = None,
) -> None:
    """Run the delivery worker for some integration kinds (all by default)."""
    settings = load_settings()
    unknown = sorted(set(integration or ()) - set(INTEGRATION_NAMES))
    if unknown:
        fail(f"--integration: unknown {', '.join(unknown)}; choose from {', '.join(INTEGRATION_NAMES)}", 2)

    async def main() -> None:
        nc = await connect_nats(settings, name="turbohooks-worker")
        try:
            await provision(nc.jetstream(), settings)
            async with _stop_on_signal() as stop:
                the_worker = Worker(settings, nc, integrations=integration)
                freeze_heap()
                console.print(f"worker running ({', '.join(sorted(the_worker.kinds))}); Ctrl-C stops it")
                await the_worker.run(stop)
        finally:
            await nc.close()

    run(main)


def recorder() -> None:
    """Run the recorder: attempt outcomes from NATS into the delivery log (SQL)."""
    settings = load_settings()

    async def main() -> None:
        from consumers import Recorder, open_engine

        async with open_engine(settings, name="recorder") as engine, _stop_on_signal() as stop:
            console.print(f"recorder running, writing to {engine.db.url}; Ctrl-C stops it")
            freeze_heap()
            await Recorder(settings, engine.nc, engine.deliveries, engine.service).run(stop)

    run(main)


def register(app: typer.Typer) -> None:
    """Add the process roles to ``app``."""
    app.command()(up)
    app.command()(worker)
    app.command()(recorder)
