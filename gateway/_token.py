"""The admin token: where it comes from (the API's guard checks it, the CLI prints where it is)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from typing import Final

from streams import ConfigError, Settings
from streams.settings import GatewaySettings

__all__ = ("ADMIN_TOKEN_FILE", "ADMIN_TOKEN_VARIABLE", "load_or_create_admin_token")

_log = logging.getLogger("turbohooks.gateway")

ADMIN_TOKEN_VARIABLE: Final = "TURBOHOOKS_ADMIN_TOKEN"  # noqa: S105 — a variable name, not a secret
ADMIN_TOKEN_FILE: Final = "admin-token"  # noqa: S105 — a file name, not a secret
"""The file in the data dir holding the generated token."""
_MIN_LENGTH: Final = 16


def load_or_create_admin_token(settings: Settings, gateway: GatewaySettings | None = None) -> tuple[str, bool]:
    """The admin token and whether it was just generated.

    ``gateway.admin_token`` (``TURBOHOOKS_ADMIN_TOKEN``, read once at start; when
    ``gateway`` is not given, the settings are read now) wins; else
    ``<data dir>/admin-token``; else a new random token is written there (mode
    0600) so that restarts keep it.
    """
    if gateway is None:
        gateway = GatewaySettings.from_env()
    given = gateway.admin_token
    if given:
        if len(given) < _MIN_LENGTH:
            raise ConfigError(ADMIN_TOKEN_VARIABLE, f"is shorter than {_MIN_LENGTH} characters; use a random token")
        return given, False
    path = settings.data_dir / ADMIN_TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored, False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        # O_EXCL: two processes starting at once agree on the first one's token.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored, False
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)  # an empty file left by a crash
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)
    _log.info("gateway: generated an admin token in %s", path)
    return token, True
