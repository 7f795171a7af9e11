"""The `turbohooks` command."""

from __future__ import annotations

import logging
import os

import typer

from . import _events, _gateway, _generators, _integrations, _processes, _secrets
from ._subscriptions import deliveries_app, subscriptions_app

__all__ = ("app", "main")

app = typer.Typer(
    name="turbohooks",
    help="Webhooks and event streaming for Turbo, on NATS JetStream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_events.register(app)
_processes.register(app)
_generators.register(app)
_gateway.register(app)
_integrations.register(app)
_secrets.register(app)
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(deliveries_app, name="deliveries")


def main() -> None:
    """Entry point of the console script."""
    logging.basicConfig(
        level=os.environ.get("TURBOHOOKS_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app()
