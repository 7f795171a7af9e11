"""Settings of ``turbohooks claude-server``: its role's settings (``CLAUDE_*``) and the server's own.

The variables are rows of the settings table (:class:`streams.settings.ClaudeServerSettings`,
read once at start); what only the server knows (a ``whsec_`` secret is required
and must decode) is checked here.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from streams import ConfigError, EventValidationError
from streams.settings import ClaudeServerSettings, load_config

from ...core import secret_bytes

__all__ = ("ClaudeServerConfig",)


class ClaudeServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of ``turbohooks claude-server``; :meth:`from_settings` builds it from the ``CLAUDE_*`` role."""

    secrets: tuple[str, ...]
    """``CLAUDE_WEBHOOK_SECRET`` (``--secret``): the subscription's ``whsec_`` secret (comma-separated: several)."""
    command: tuple[str, ...] = ("claude", "-p")
    """``CLAUDE_COMMAND``: the command line; the prompt arrives on its standard input."""
    host: str = "127.0.0.1"
    port: int = 9000
    timeout: float = 600.0
    """``CLAUDE_TIMEOUT``: a run older than this is killed."""
    kill_grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL of a run that timed out."""
    max_concurrent: int = 2
    """``CLAUDE_MAX_CONCURRENT``: runs at once, across issues."""
    data_dir: Path = Path(".turbohooks")
    """Where ``claude-runs.jsonl`` is kept (``TURBOHOOKS_DATA_DIR``)."""
    workdir: Path | None = None
    """``CLAUDE_WORKDIR``: the command's working directory (the repository Claude works in)."""
    issue_context_url: str | None = None
    """``CLAUDE_ISSUE_CONTEXT_URL``: fetched into the prompt, ``{issue_id}`` replaced: ``http://localhost:8001/api/v1/issues/{issue_id}``."""
    publish_replies: bool = False
    """``CLAUDE_PUBLISH_REPLIES``: publish a successful run's output as the AI's ``comment.created``."""
    output_cap: int = 65536
    """Bytes of standard output (and of standard error) kept per run."""
    history: int = 1000
    """Runs kept in memory for ``GET /runs``."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / "claude-runs.jsonl"

    @classmethod
    def from_settings(cls, settings: ClaudeServerSettings, **overrides: Any) -> ClaudeServerConfig:
        """The server's config from its role's settings; ``overrides`` (command-line options) win when not None."""
        values: dict[str, Any] = msgspec.structs.asdict(settings)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._checked(values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClaudeServerConfig:
        """:meth:`from_settings` of the settings read now (the file, then ``environ``); :class:`ConfigError` if bad."""
        return cls.from_settings(load_config(environ).role(ClaudeServerSettings), **overrides)

    @classmethod
    def _checked(cls, values: dict[str, Any]) -> ClaudeServerConfig:
        secrets = values.get("secrets") or ()
        if isinstance(secrets, str):
            secrets = tuple(s.strip() for s in secrets.split(",") if s.strip())
        if not secrets:
            raise ConfigError("CLAUDE_WEBHOOK_SECRET", "is required: the whsec_ secret of the Claude subscription")
        for secret in secrets:
            try:
                secret_bytes(secret)
            except EventValidationError as exc:
                raise ConfigError("CLAUDE_WEBHOOK_SECRET", exc.problem) from None
        values["secrets"] = tuple(secrets)
        if isinstance(values.get("command"), str):
            values["command"] = tuple(shlex.split(values["command"]))
        if not values.get("command", ("claude",)):
            raise ConfigError("CLAUDE_COMMAND", "is empty")
        if values.get("timeout", 1) <= 0:
            raise ConfigError("CLAUDE_TIMEOUT", "must be greater than zero")
        template = values.get("issue_context_url")
        if template is not None and not str(template).startswith(("http://", "https://")):
            raise ConfigError("CLAUDE_ISSUE_CONTEXT_URL", f"{template!r} is not an http(s):// URL")
        return cls(**values)
