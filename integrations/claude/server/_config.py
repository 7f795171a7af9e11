"""Settings of ``turbohooks claude-server``, read from the ``CLAUDE_*`` variables."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from streams import ConfigError, EventValidationError, parse_duration

from ...core import secret_bytes

__all__ = ("ClaudeServerConfig",)


def _bool(variable: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(variable, f"{text!r} is not a boolean; write true or false")


class ClaudeServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of ``turbohooks claude-server``; :meth:`from_env` reads the ``CLAUDE_*`` variables."""

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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClaudeServerConfig:
        """Read the ``CLAUDE_*`` variables; ``overrides`` (command-line options) win; :class:`ConfigError` if bad."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if secret := env.get("CLAUDE_WEBHOOK_SECRET", "").strip():
            values["secrets"] = tuple(s.strip() for s in secret.split(",") if s.strip())
        if command := env.get("CLAUDE_COMMAND", "").strip():
            values["command"] = tuple(shlex.split(command))
        if text := env.get("CLAUDE_TIMEOUT", "").strip():
            try:
                values["timeout"] = parse_duration(text)
            except ValueError as exc:
                raise ConfigError("CLAUDE_TIMEOUT", str(exc)) from None
        if text := env.get("CLAUDE_MAX_CONCURRENT", "").strip():
            if not text.isdigit() or int(text) < 1:
                raise ConfigError("CLAUDE_MAX_CONCURRENT", f"{text!r} is not a whole number of at least 1")
            values["max_concurrent"] = int(text)
        if text := env.get("CLAUDE_WORKDIR", "").strip():
            values["workdir"] = Path(text)
        if text := env.get("CLAUDE_ISSUE_CONTEXT_URL", "").strip():
            values["issue_context_url"] = text
        if "CLAUDE_PUBLISH_REPLIES" in env:
            values["publish_replies"] = _bool("CLAUDE_PUBLISH_REPLIES", env["CLAUDE_PUBLISH_REPLIES"])
        if text := env.get("TURBOHOOKS_DATA_DIR", "").strip():
            values["data_dir"] = Path(text)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._checked(values)

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
