"""Long-running roles: `turbohooks up`, `worker`, `recorder`; and `provision`.

Stopping: the first SIGINT/SIGTERM asks every role to finish what it holds
(a delivery in flight gets up to ``WEBHOOK_TIMEOUT``); a second one, or the
grace running out, stops at once. A last watchdog thread ends the process if
even that does not return, so no turbohooks process is ever left ignoring
signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Final

import msgspec
import typer
from nats.aio.client import Client as NATS

from consumers import Worker, WorkerMetrics, ensure_env_subscriptions
from integrations import INTEGRATION_NAMES
from publishers import EventPublisher, MilestoneProcessor, Scheduler, SchedulerMetrics, SchedulerSettings
from streams import (
    ATTEMPTS_STREAM,
    DEAD_LETTER_STREAM,
    DataDirLock,
    EmbeddedNats,
    NatsCluster,
    Settings,
    connect_nats,
    embedded_config,
    heartbeat,
    provision,
)
from streams.settings import HealthSettings

from ._common import console, err_console, fail, freeze_heap, load_role, load_settings, nats_connection, run
from ._metrics import MetricsPort, metrics_port, serve_metrics
from ._monitor import Monitor
from ._safe import safe

__all__ = ("register",)

_GRACE_MARGIN: Final = 5.0
"""Seconds past ``WEBHOOK_TIMEOUT`` a graceful stop may take (acks, the outbox, the server's flush)."""
_HARD_MARGIN: Final = 10.0
"""Seconds past the grace before the watchdog thread ends the process without Python's clean-up."""


def _watchdog(seconds: float, on_expiry: Callable[[], None]) -> threading.Timer:
    def expire() -> None:
        on_expiry()
        sys.stderr.write(f"error: turbohooks: did not stop within {seconds:g}s; exiting now\n")
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    _watchdogs.append(timer)
    return timer


_watchdogs: list[threading.Timer] = []


def _disarm() -> None:
    """The command returned: no watchdog may end the process any more."""
    while _watchdogs:
        _watchdogs.pop().cancel()


def _run_role(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """:func:`run` for a long-running role: the stop watchdog ends with it."""
    try:
        run(main)
    finally:
        _disarm()


@contextlib.asynccontextmanager
async def _stop_on_signal(
    grace: float | None = None, on_force: Callable[[], None] = lambda: None
) -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM (graceful shutdown).

    With ``grace``: once the event is set (by a signal or by the code), the
    task that entered this context is cancelled after ``grace`` seconds, or at
    once on a second signal; ``grace + 10`` s later a watchdog thread calls
    ``on_force`` (kill the children) and exits the process.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    timers: list[asyncio.TimerHandle] = []
    forced = False

    def force(why: str) -> None:
        nonlocal forced
        if forced or main is None or main.done():
            return
        forced = True
        err_console.print(f"stopping at once ({why})", highlight=False)
        main.cancel()

    def on_signal() -> None:
        if stop.is_set():
            force("second signal")
        stop.set()

    async def arm() -> None:
        await stop.wait()
        if grace is not None:
            timers.append(loop.call_later(grace, force, f"still busy after {grace:g}s"))
            _watchdog(grace + _HARD_MARGIN, on_force)

    armer = loop.create_task(arm())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield stop
    finally:
        armer.cancel()
        for timer in timers:
            timer.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        # The watchdog keeps running: the clean-up after this context (closing
        # connections, stopping the server) stays bounded; `_disarm()` ends it.


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


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again any that a lost cancel left running."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


async def _with_heartbeat(
    role_run: Coroutine[Any, Any, None], nc: NATS, settings: Settings, role: str, stop: asyncio.Event
) -> None:
    """Run a role with its heartbeat beside it (streams/_heartbeat.py); the heartbeat ends with the role."""
    beat = asyncio.create_task(heartbeat(nc.jetstream(), settings, role, stop), name=f"heartbeat-{role}")
    try:
        await role_run
    finally:
        if not stop.is_set():
            beat.cancel()  # the role failed: its key stays, and goes silent (the alert)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(beat, 5.0)  # stopped cleanly: the heartbeat deletes its key


def _mode_line(settings: Settings) -> str:
    """The start-up banner's line on destination rules: what a receiver on this machine may be."""
    if settings.local_development and settings.webhook_allow_http and settings.webhook_allowed_hosts:
        hosts = ", ".join(settings.webhook_allowed_hosts)
        return (
            f"[yellow]local development[/yellow]: http:// and loopback receivers accepted (allowed hosts: {hosts}); "
            "TURBOHOOKS_ENV=production, or a NATS_URL, enforces https and the address rules"
        )
    why = "TURBOHOOKS_ENV=production" if settings.environment == "production" else "NATS_URL is set"
    http = "http:// accepted (WEBHOOK_ALLOW_HTTP)" if settings.webhook_allow_http else "https only"
    allowed = ", ".join(settings.webhook_allowed_hosts) or "none"
    return f"destination rules enforced ({why}): {http}; private/loopback hosts allowed: {allowed}"


async def _up(
    settings: Settings,
    schedule: SchedulerSettings,
    health: HealthSettings,
    host: str,
    port: int,
    *,
    quiet: bool,
    status_every: float,
    cluster: int = 0,
) -> None:
    # The gateway (Litestar) and the SQL side load here, not when the CLI
    # starts: a `turbohooks worker` process needs neither.
    from consumers import Recorder, RecorderMetrics, open_engine
    from gateway import load_or_create_admin_token, serve_gateway
    from streams.settings import MetricsSettings

    from ..operations import AlertEvaluator

    server: EmbeddedNats | None = None

    def kill_server() -> None:
        pid = server.pid if server is not None else None
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    grace = settings.webhook_timeout + _GRACE_MARGIN
    async with contextlib.AsyncExitStack() as stack:
        # One `up` per data dir: never two nats-servers on one JetStream store.
        stack.enter_context(DataDirLock(settings.data_dir))
        # Signals first: from here on, Ctrl-C is a graceful stop, bounded by the grace.
        stop = await stack.enter_async_context(_stop_on_signal(grace, on_force=kill_server))
        if cluster and settings.nats_url is None:
            nodes = await stack.enter_async_context(
                NatsCluster(
                    size=cluster,
                    store_root=settings.data_dir / "cluster",
                    host=settings.nats_host,
                    first_port=settings.nats_port,
                    log_dir=settings.data_dir,
                )
            )
            console.print(f"nats-server cluster of {cluster} (replicas {cluster}) on [bold]{nodes.url}[/bold]")
            console.print(_mode_line(settings), highlight=False, soft_wrap=True)
            # Every process of `up` is given every node and replicated streams; the commands of other
            # terminals reach node 1 on the usual port (and learn the others from it), but provision
            # with TURBOHOOKS_STREAM_REPLICAS: export it there too.
            settings = msgspec.structs.replace(settings, nats_url=nodes.url, stream_replicas=cluster)
            console.print(
                f"other terminals: [bold]export TURBOHOOKS_STREAM_REPLICAS={cluster}[/bold] (node 1 is "
                f"{settings.nats_host}:{nodes.nodes[0].port})",
                highlight=False,
            )
        elif settings.nats_url is None:
            server = EmbeddedNats(
                store_dir=settings.data_dir / "jetstream",
                host=settings.nats_host,
                port=settings.nats_port,
                config=embedded_config(settings),  # dev.conf + the generated users (and TLS)
                log_file=settings.data_dir / "nats-server.log",
                own_session=True,
            )
            # Stopped last (the stack unwinds in reverse): the workers acknowledge through it first.
            await stack.enter_async_context(server)
            console.print(f"nats-server (embedded, pid {server.pid}) on [bold]{server.url}[/bold]")
        else:
            console.print(f"using NATS at [bold]{settings.nats_url}[/bold]")
        if not cluster:
            console.print(_mode_line(settings), highlight=False, soft_wrap=True)
        engine = await stack.enter_async_context(open_engine(settings, name="up"))
        await engine.service.mirror()
        for sub in await ensure_env_subscriptions(engine.service):
            console.print(
                f"subscription [bold]{safe(sub.name)}[/bold] ({sub.integration}) from the environment → {safe(sub.url)}"
            )
        for name in (settings.stream_name, ATTEMPTS_STREAM, DEAD_LETTER_STREAM, "TURBOHOOKS_REDELIVER"):
            info = await engine.js.stream_info(name)
            console.print(f"stream [bold]{name}[/bold] ready ({info.state.messages} messages)")
        console.print(f"database {engine.db.url}")
        # Each role on its own connection, with its own NATS user's permissions.
        as_role = {
            r: await connect_nats(settings, name=f"turbohooks-{r}", role=r) for r in ("worker", "recorder", "scheduler")
        }
        for conn in as_role.values():
            stack.push_async_callback(conn.close)
        # One process: every role's metrics are served by the gateway's /metrics, each labelled with its process.
        worker_metrics = WorkerMetrics(subscription_labels=load_role(MetricsSettings).subscription_labels)
        recorder_metrics, scheduler_metrics = RecorderMetrics(), SchedulerMetrics()
        worker = Worker(settings, as_role["worker"], metrics=worker_metrics)
        recorder = Recorder(settings, as_role["recorder"], engine.deliveries, engine.service, metrics=recorder_metrics)
        monitor = Monitor(
            settings,
            engine.nc,
            console,
            registry=engine.registry,
            running=lambda: len(worker.running),
            interval=status_every,
            quiet=quiet,
        )
        generators = await stack.enter_async_context(
            EventPublisher(settings, nc=as_role["scheduler"], name="generators")
        )
        token, created = load_or_create_admin_token(settings)
        listening = asyncio.Event()
        freeze_heap()

        def ready(url: str) -> None:
            console.print(
                f"gateway on [bold]{url}[/bold] (web UI at {url}/settings/webhooks, OpenAPI at {url}/schema)",
                soft_wrap=True,
            )
            if created:
                # The token itself only in its file (mode 0600): stdout ends up in logs.
                console.print(
                    f"admin token generated: read it from {settings.data_dir / 'admin-token'}",
                    highlight=False,
                    soft_wrap=True,
                )
            listening.set()

        tasks = [
            asyncio.create_task(
                serve_gateway(
                    engine,
                    host=host,
                    port=port,
                    admin_token=token,
                    stop=stop,
                    on_ready=ready,
                    siblings=(worker_metrics, recorder_metrics, scheduler_metrics),
                ),
                name="gateway",
            ),
            asyncio.create_task(worker.run(stop), name="worker"),
            asyncio.create_task(recorder.run(stop), name="recorder"),
            asyncio.create_task(
                Scheduler(generators, settings=schedule, metrics=scheduler_metrics).run(stop), name="scheduler"
            ),
            asyncio.create_task(MilestoneProcessor(generators, metrics=scheduler_metrics).run(stop), name="milestones"),
            asyncio.create_task(monitor.run(stop), name="monitor"),
            asyncio.create_task(AlertEvaluator(engine, health).run(stop), name="alerts"),
            *(
                asyncio.create_task(heartbeat(conn.jetstream(), settings, role, stop), name=f"heartbeat-{role}")
                for role, conn in as_role.items()
            ),
        ]
        waiter = asyncio.create_task(listening.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper, tasks[0]}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if listening.is_set() and not stop.is_set():
            console.print(
                f"[green]turbohooks is up[/green]: gateway, worker ({', '.join(sorted(worker.kinds))}), recorder, "
                "scheduler and milestone processor running; Ctrl-C stops it"
            )
        try:
            await _until_first_done(stop, *tasks)
        finally:
            await _cancel(tasks)  # stopped at once (cancelled): the roles stop with it
    console.print("stopped")


def up(
    port: Annotated[int, typer.Option("--port", help="Port of the gateway (admin API and UI).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address the gateway listens on.")] = "127.0.0.1",
    nats_port: Annotated[
        int | None, typer.Option("--nats-port", help="Port of the embedded nats-server (TURBOHOOKS_NATS_PORT).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No status line (failures are still shown).")] = False,
    status_every: Annotated[
        float, typer.Option("--status-every", min=0.1, help="Seconds between status lines.", hidden=True)
    ] = 5.0,
    cluster: Annotated[
        int,
        typer.Option(
            "--cluster",
            min=0,
            max=5,
            help="Run a JetStream cluster of N embedded nats-servers (3: one may stop) with replicas N; 0: one server.",
        ),
    ] = 0,
) -> None:
    """Run everything: embedded NATS (unless NATS_URL is set), the gateway, worker, recorder and scheduler."""
    settings = load_settings(nats_port=nats_port)
    schedule = load_role(SchedulerSettings)
    health = load_role(HealthSettings)
    if cluster and settings.nats_url is not None:
        fail("--cluster: NATS_URL is set; the cluster is embedded (unset NATS_URL, or run without --cluster)", 2)
    _run_role(
        lambda: _up(settings, schedule, health, host, port, quiet=quiet, status_every=status_every, cluster=cluster)
    )


def worker(
    integration: Annotated[
        list[str] | None,
        typer.Option(
            "--integration", help=f"Integration kind(s) to run: {', '.join(INTEGRATION_NAMES)}. Default: all."
        ),
    ] = None,
    metrics: MetricsPort = None,
) -> None:
    """Run the delivery worker for some integration kinds (all by default); provisions the streams."""
    settings = load_settings()
    metrics_settings, port = metrics_port("worker", metrics)
    unknown = sorted(set(integration or ()) - set(INTEGRATION_NAMES))
    if unknown:
        fail(f"--integration: unknown {', '.join(unknown)}; choose from {', '.join(INTEGRATION_NAMES)}", 2)

    async def main() -> None:
        nc = await connect_nats(settings, name="turbohooks-worker", role="worker")
        try:
            await provision(nc.jetstream(), settings)
            the_metrics = WorkerMetrics(subscription_labels=metrics_settings.subscription_labels)
            async with (
                serve_metrics(the_metrics, metrics_settings, port),
                _stop_on_signal(settings.webhook_timeout + _GRACE_MARGIN) as stop,
            ):
                the_worker = Worker(settings, nc, integrations=integration, metrics=the_metrics)
                freeze_heap()
                console.print(f"worker running ({', '.join(sorted(the_worker.kinds))}); Ctrl-C stops it")
                await _with_heartbeat(the_worker.run(stop), nc, settings, "worker", stop)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    _run_role(main)


def recorder(metrics: MetricsPort = None) -> None:
    """Run the recorder: attempt outcomes from NATS into the delivery log (SQL); provisions the streams."""
    settings = load_settings()
    metrics_settings, port = metrics_port("recorder", metrics)

    async def main() -> None:
        from consumers import Recorder, RecorderMetrics, open_engine

        the_metrics = RecorderMetrics()
        async with (
            open_engine(settings, name="recorder", role="recorder") as engine,
            serve_metrics(the_metrics, metrics_settings, port),
            _stop_on_signal(settings.webhook_timeout + _GRACE_MARGIN) as stop,
        ):
            console.print(f"recorder running, writing to {engine.db.url}; Ctrl-C stops it")
            freeze_heap()
            the_recorder = Recorder(settings, engine.nc, engine.deliveries, engine.service, metrics=the_metrics)
            await _with_heartbeat(the_recorder.run(stop), engine.nc, settings, "recorder", stop)

    _run_role(main)


def provision_command() -> None:
    """Create or update the streams and the recorder's consumer (idempotent; `up` and every process do it too)."""
    settings = load_settings()

    async def main() -> None:
        async with nats_connection(settings, name="turbohooks-provision", streams="provision") as nc:
            js = nc.jetstream(timeout=settings.publish_timeout)
            for name in (settings.stream_name, ATTEMPTS_STREAM, DEAD_LETTER_STREAM):
                info = await js.stream_info(name)
                console.print(f"stream [bold]{name}[/bold] ready ({info.state.messages} messages)")

    run(main)


def register(app: typer.Typer) -> None:
    """Add the process roles to ``app``."""
    app.command()(up)
    app.command()(worker)
    app.command()(recorder)
    app.command("provision")(provision_command)
