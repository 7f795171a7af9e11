"""The environment of a ``turbohooks`` subprocess: the test's own, without any turbohooks setting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from streams import Settings
from streams.settings import CONFIG_VARIABLE, SETTINGS_TABLE

__all__ = ("BIN", "cli_env", "engine_cli_env", "run_cli", "run_cli_async")

_PREFIXES: Final = ("NATS_", "TURBOHOOKS_", "WEBHOOK_", "DATABASE_", "SMTP_", "CLAUDE_", "SLACK_", "DISCORD_")
_SETTINGS: Final = frozenset({*SETTINGS_TABLE, CONFIG_VARIABLE})


def _setting(name: str) -> bool:
    # Every variable of the table, its families, and the *_TOKEN variables a GitHub worker reads.
    return name in _SETTINGS or name.startswith(_PREFIXES) or name.endswith("_TOKEN")


def cli_env(*, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """``os.environ`` without any setting of turbohooks (nor names starting with ``drop``), then ``extra``.

    A developer's ``NATS_URL`` or ``WEBHOOK_RETRY_COUNT`` must not leak into a
    process a test starts: the test says every setting it wants in ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if not _setting(k) and not (drop and k.startswith(drop))}
    env.update(extra)
    return env


BIN: Final = Path(sys.executable).parent / "turbohooks"
"""The venv's ``turbohooks`` command, as a user runs it."""


def engine_cli_env(
    settings: Settings, *, columns: int = 200, local_receivers: bool = True, **extra: str
) -> dict[str, str]:
    """A ``turbohooks`` process on the test's NATS and data dir (so its database and key file)."""
    receivers = {"WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"} if local_receivers else {}
    return cli_env(
        NATS_URL=settings.resolved_nats_url(),
        TURBOHOOKS_DATA_DIR=str(settings.data_dir),
        TURBOHOOKS_STREAM_MAX_BYTES="1GiB",
        COLUMNS=str(columns),
        **receivers,
        **extra,
    )


def run_cli(*args: str, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``turbohooks *args``; its output as text."""
    return subprocess.run(
        [str(BIN), *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


async def run_cli_async(*args: str, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` in a thread: the test's event loop keeps serving its receiver and worker meanwhile."""
    return await asyncio.to_thread(run_cli, *args, env=env, timeout=timeout)
