"""`turbohooks scheduler | simulate`: the processes that produce events rather than deliver them."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from publishers import EventPublisher, MilestoneProcessor, Scheduler, SchedulerMetrics, SimulationStats, Simulator
from publishers.processors import label
from streams import heartbeat
from streams.settings import SchedulerSettings

from ._common import console, load_role, load_settings, nats_connection, run
from ._metrics import MetricsPort, metrics_port, serve_metrics
from ._processes import _stop_on_signal

__all__ = ("register",)


def scheduler(metrics: MetricsPort = None) -> None:
    """Run the scheduler (due dates, overdue, starting soon, digests) and the milestone processor."""
    settings = load_settings()
    schedule = load_role(SchedulerSettings)
    metrics_settings, port = metrics_port("scheduler", metrics)

    async def main() -> None:
        the_metrics = SchedulerMetrics()
        async with (
            nats_connection(settings, name="turbohooks-scheduler", role="scheduler", streams="provision") as nc,
            EventPublisher(settings, nc=nc, name="scheduler") as publisher,
            serve_metrics(the_metrics, metrics_settings, port),
            _stop_on_signal() as stop,
        ):
            the_scheduler = Scheduler(publisher, settings=schedule, metrics=the_metrics)
            milestones = MilestoneProcessor(publisher, metrics=the_metrics)
            thresholds = ",".join(label(t) for t in schedule.due_thresholds) or "none"
            console.print(
                f"scheduler running (due dates {thresholds}, starting soon {label(schedule.starting_soon)}, "
                f"digest {schedule.digest_time:%H:%M} UTC) and milestone processor running; Ctrl-C stops them"
            )
            tasks = [
                asyncio.create_task(the_scheduler.run(stop), name="scheduler"),
                asyncio.create_task(milestones.run(stop), name="milestones"),
            ]
            beat = asyncio.create_task(heartbeat(nc.jetstream(), settings, "scheduler", stop), name="heartbeat")
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            stop.set()  # one role ending (on error) ends the other
            await asyncio.gather(*tasks, beat)
            console.print("stopped")

    run(main)


def simulate(
    rate: Annotated[float, typer.Option("--rate", help="Events per second.", min=0.1)] = 20.0,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run.", min=0.1)] = 60.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Same seed, same events (ids start sim<seed>-).")] = None,
) -> None:
    """Play realistic Turbo activity (projects, issues, comments, milestones, …) through the publisher."""
    settings = load_settings()

    async def main() -> SimulationStats:
        async with (
            nats_connection(settings, name="turbohooks-simulate", role="publisher", streams="provision") as nc,
            EventPublisher(settings, nc=nc, name="simulate") as publisher,
        ):
            simulator = Simulator(publisher, seed=seed, rate=rate)
            console.print(f"simulating with seed [bold]{simulator.seed}[/bold] (ids start {simulator.prefix}-)")
            columns = (
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f} events"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=False) as progress:
                task = progress.add_task("publishing", total=rate * duration)
                stats = await simulator.run(duration=duration, on_progress=lambda n: progress.update(task, completed=n))
                progress.update(task, total=stats.events, completed=stats.events)
            return stats

    stats = run(main)
    table = Table(title=f"{stats.events} events in {stats.elapsed:.1f}s ({stats.steps} Turbo actions)")
    table.add_column("event type")
    table.add_column("count", justify="right")
    for event_type, count in stats.counts.items():
        table.add_row(event_type, str(count))
    console.print(table)
    console.print(f"published {stats.events} events")


def register(app: typer.Typer) -> None:
    """Add the event generators to ``app``."""
    app.command()(scheduler)
    app.command()(simulate)
