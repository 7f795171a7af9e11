"""The environment of a ``turbohooks`` subprocess: the test's own, without any turbohooks setting."""

from __future__ import annotations

import os
from typing import Final

from streams.settings import CONFIG_VARIABLE, SETTINGS_TABLE

__all__ = ("cli_env",)

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
