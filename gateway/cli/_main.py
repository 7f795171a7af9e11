"""The `turbohooks` command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from streams import VERSION, ConfigError
from streams.settings import LoggingSettings, TracingSettings, load_config
from streams.telemetry import configure_logging, configure_tracing

from . import _audit, _dead_letters, _events, _gateway, _generators, _integrations, _processes, _secrets, _top
from ._common import reset_config
from ._subscriptions import deliveries_app, subscriptions_app

__all__ = ("app", "main")

app = typer.Typer(
    name="turbohooks",
    help="Webhooks and event streaming for Turbo, on NATS JetStream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"turbohooks {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Webhooks and event streaming for Turbo, on NATS JetStream."""
    reset_config()  # in-process callers (tests, an embedding program) run several commands in one process


_events.register(app)
_processes.register(app)
_generators.register(app)
_gateway.register(app)
_integrations.register(app)
_audit.register(app)
_secrets.register(app)
_top.register(app)
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(_dead_letters.dead_letters_app, name="dead-letters")


def _observability() -> tuple[LoggingSettings, TracingSettings]:
    """``TURBOHOOKS_LOG_*`` and ``TURBOHOOKS_TRACING`` (file or environment); a bad value is reported by the
    command that loads settings, and until then the defaults hold."""
    try:
        config = load_config()
        return config.role(LoggingSettings), config.role(TracingSettings)
    except ConfigError:
        return LoggingSettings(), TracingSettings()


def main() -> None:
    """Entry point of the console script: no traceback reaches a user unless TURBOHOOKS_LOG_LEVEL=DEBUG."""
    logs, tracing = _observability()
    level = logs.level
    configure_logging(level, logs.format)
    configure_tracing(tracing)
    try:
        app()
    except Exception as exc:  # the last net: every expected failure is one line already (run(), fail())
        if level == "DEBUG":
            raise
        cause = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        sys.stderr.write(f"error: turbohooks: {cause} (TURBOHOOKS_LOG_LEVEL=DEBUG shows the traceback)\n")
        sys.exit(1)
