"""`turbohooks claude-server`: the receiving side of the Claude integration."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer

from streams import ConfigError, Event

from ._common import console, fail, load_settings, run
from ._metrics import MetricsPort, metrics_port, serve_metrics

__all__ = ("register",)


def claude_server(
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).")] = 9000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            help="The Claude subscription's whsec_ secret (CLAUDE_WEBHOOK_SECRET; prefer the variable: "
            "a command line is visible to other users).",
        ),
    ] = None,
    command: Annotated[
        str | None, typer.Option("--command", help="Command run per event, prompt on stdin (CLAUDE_COMMAND).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds before a run is killed (CLAUDE_TIMEOUT; 600).")
    ] = None,
    publish_replies: Annotated[
        bool | None,
        typer.Option(
            "--publish-replies/--no-publish-replies",
            help="Publish a run's output as the AI's comment.created (CLAUDE_PUBLISH_REPLIES).",
        ),
    ] = None,
    metrics: MetricsPort = None,
) -> None:
    """Receive Claude webhooks and run Claude Code on them, one run per issue at a time."""
    # The receiving server (aiohttp.web) loads here: the CLI module is imported by every command, workers included.
    from integrations import ClaudeServer, ClaudeServerConfig

    settings = load_settings()
    metrics_settings, metrics_at = metrics_port("claude_server", metrics)
    try:
        config = ClaudeServerConfig.from_env(
            port=port,
            host=host,
            secrets=secret,
            command=command,
            timeout=timeout,
            publish_replies=publish_replies,
            data_dir=settings.data_dir,
        )
    except ConfigError as exc:
        fail(str(exc), 2)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            publish = None
            if config.publish_replies:
                from publishers import EventPublisher

                publisher = await stack.enter_async_context(EventPublisher(settings, name="claude-server"))

                async def publish(event: Event) -> object:
                    return await publisher.publish(event)

            server = await stack.enter_async_context(ClaudeServer(config, publish=publish))
            await stack.enter_async_context(serve_metrics(server.metrics, metrics_settings, metrics_at))
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            console.print(
                f"claude-server listening on {server.url} (runs: {' '.join(config.command)}; "
                f"log: {config.log_path}); Ctrl-C stops it",
                highlight=False,
                soft_wrap=True,
            )
            await stop.wait()

    run(main)


def register(app: typer.Typer) -> None:
    """Add the integrations' commands to ``app``."""
    app.command("claude-server")(claude_server)
