"""Settings: one typed object, read from the environment.

Every variable is listed in :data:`SETTINGS_VARIABLES` (and in the README). A bad
value stops the program with :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from ._errors import ConfigError

__all__ = ("SETTINGS_VARIABLES", "Settings", "parse_duration", "parse_size")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(text: str) -> float:
    """Seconds in ``"500ms"``, ``"30"``, ``"5m"``, ``"2h"``, ``"7d"`` (a bare number is seconds)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 7d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_size(text: str) -> int:
    """Bytes in ``"1GiB"``, ``"512MB"``, ``"1048576"``; -1 means unlimited."""
    if text.strip() == "-1":
        return -1
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; write e.g. 512MiB or 10GiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "")[:1].lower()]


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean; write true or false")


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _schedule(text: str) -> tuple[float, ...]:
    if not text.strip():
        return ()
    return tuple(parse_duration(part) for part in text.split(","))


def _hosts(text: str) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in text.split(",") if h.strip())


def _port(text: str) -> int:
    value = _int(text)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of turbohooks; :meth:`from_env` reads them from the environment."""

    nats_url: str | None = None
    """``NATS_URL``: a running NATS server to use. Unset: the embedded one is used."""
    data_dir: Path = Path(".turbohooks")
    """``TURBOHOOKS_DATA_DIR``: the embedded server's store, the SQLite files, the admin token."""
    nats_host: str = "127.0.0.1"
    """``TURBOHOOKS_NATS_HOST``: where the embedded nats-server listens."""
    nats_port: int = 14222
    """``TURBOHOOKS_NATS_PORT``: the embedded nats-server's port (not 4222, to stay clear of a system NATS)."""
    database_url: str | None = None
    """``DATABASE_URL``: SQLAlchemy URL; default ``sqlite+aiosqlite:///<data dir>/turbohooks.db``."""
    stream_name: str = "TURBO_EVENTS"
    """``TURBOHOOKS_STREAM``: the JetStream stream holding ``turbo.>``."""
    stream_max_age: float = 7 * 86400.0
    """``TURBOHOOKS_STREAM_MAX_AGE``: events older than this are dropped (replay horizon)."""
    stream_max_bytes: int = 10 << 30
    """``TURBOHOOKS_STREAM_MAX_BYTES``: the stream's size cap; the oldest events go first."""
    stream_replicas: int = 1
    """``TURBOHOOKS_STREAM_REPLICAS``: 1 here; 3 on a JetStream cluster."""
    duplicate_window: float = 600.0
    """``TURBOHOOKS_DUPLICATE_WINDOW``: a re-published ``event_id`` within it is stored once."""
    publish_timeout: float = 5.0
    """``TURBOHOOKS_PUBLISH_TIMEOUT``: how long one publish waits for JetStream's ack."""
    publish_retry_horizon: float = 60.0
    """``TURBOHOOKS_PUBLISH_RETRY_HORIZON``: how long ``emit()`` keeps retrying before it raises."""
    webhook_enabled: bool = True
    """``WEBHOOK_ENABLED``: false publishes events but delivers none."""
    webhook_timeout: float = 30.0
    """``WEBHOOK_TIMEOUT``: seconds one delivery attempt may take."""
    webhook_retry_count: int = 3
    """``WEBHOOK_RETRY_COUNT``: retries after the first attempt."""
    webhook_retry_delay: float = 5.0
    """``WEBHOOK_RETRY_DELAY``: the first retry's delay; later ones double, with jitter."""
    webhook_retry_schedule: tuple[float, ...] = ()
    """``WEBHOOK_RETRY_SCHEDULE``: explicit delays (``5s,5m,30m,2h``) replacing count and delay."""
    webhook_retry_after_cap: float = 3600.0
    """``WEBHOOK_RETRY_AFTER_CAP``: the longest ``Retry-After`` honoured."""
    webhook_allow_http: bool = False
    """``WEBHOOK_ALLOW_HTTP``: accept plain ``http://`` destinations."""
    webhook_allowed_hosts: tuple[str, ...] = ()
    """``WEBHOOK_ALLOWED_HOSTS``: hosts allowed to resolve to private or loopback addresses."""
    webhook_max_in_flight: int = 64
    """``WEBHOOK_MAX_IN_FLIGHT``: concurrent deliveries per subscription."""
    webhook_disable_after_failures: int = 20
    """``WEBHOOK_DISABLE_AFTER_FAILURES``: consecutive failed deliveries that disable a subscription."""
    webhook_disable_after_period: float = 86400.0
    """``WEBHOOK_DISABLE_AFTER_PERIOD``: ...and only when failing for at least this long."""
    webhook_secret_grace: float = 86400.0
    """``WEBHOOK_SECRET_GRACE``: how long a rotated-out secret keeps signing."""
    response_body_cap: int = 4096
    """``WEBHOOK_RESPONSE_BODY_CAP``: bytes of a receiver's answer kept in the delivery log."""

    def resolved_nats_url(self) -> str:
        """The server to connect to: ``NATS_URL``, or the embedded server's address."""
        return self.nats_url or f"nats://{self.nats_host}:{self.nats_port}"

    def resolved_database_url(self) -> str:
        """``DATABASE_URL``, or the SQLite file in the data dir."""
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'turbohooks.db').resolve()}"

    def retry_delays(self) -> tuple[float, ...]:
        """The delays before each retry (jitter is added when scheduling)."""
        if self.webhook_retry_schedule:
            return self.webhook_retry_schedule
        return tuple(self.webhook_retry_delay * 2**n for n in range(self.webhook_retry_count))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every variable of :data:`SETTINGS_VARIABLES`; ``overrides`` win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for variable, (field, parse) in SETTINGS_VARIABLES.items():
            raw = env.get(variable)
            if raw is None or (raw == "" and field in ("nats_url", "database_url")):
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                raise ConfigError(variable, str(exc)) from None
        values.update(overrides)
        return cls(**values)


SETTINGS_VARIABLES: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "NATS_URL": ("nats_url", str),
    "TURBOHOOKS_DATA_DIR": ("data_dir", Path),
    "TURBOHOOKS_NATS_HOST": ("nats_host", str),
    "TURBOHOOKS_NATS_PORT": ("nats_port", _port),
    "DATABASE_URL": ("database_url", str),
    "TURBOHOOKS_STREAM": ("stream_name", str),
    "TURBOHOOKS_STREAM_MAX_AGE": ("stream_max_age", _positive_duration),
    "TURBOHOOKS_STREAM_MAX_BYTES": ("stream_max_bytes", parse_size),
    "TURBOHOOKS_STREAM_REPLICAS": ("stream_replicas", _positive_int),
    "TURBOHOOKS_DUPLICATE_WINDOW": ("duplicate_window", _positive_duration),
    "TURBOHOOKS_PUBLISH_TIMEOUT": ("publish_timeout", _positive_duration),
    "TURBOHOOKS_PUBLISH_RETRY_HORIZON": ("publish_retry_horizon", _positive_duration),
    "WEBHOOK_ENABLED": ("webhook_enabled", _bool),
    "WEBHOOK_TIMEOUT": ("webhook_timeout", _positive_duration),
    "WEBHOOK_RETRY_COUNT": ("webhook_retry_count", _positive_int),
    "WEBHOOK_RETRY_DELAY": ("webhook_retry_delay", _positive_duration),
    "WEBHOOK_RETRY_SCHEDULE": ("webhook_retry_schedule", _schedule),
    "WEBHOOK_RETRY_AFTER_CAP": ("webhook_retry_after_cap", _positive_duration),
    "WEBHOOK_ALLOW_HTTP": ("webhook_allow_http", _bool),
    "WEBHOOK_ALLOWED_HOSTS": ("webhook_allowed_hosts", _hosts),
    "WEBHOOK_MAX_IN_FLIGHT": ("webhook_max_in_flight", _positive_int),
    "WEBHOOK_DISABLE_AFTER_FAILURES": ("webhook_disable_after_failures", _positive_int),
    "WEBHOOK_DISABLE_AFTER_PERIOD": ("webhook_disable_after_period", parse_duration),
    "WEBHOOK_SECRET_GRACE": ("webhook_secret_grace", parse_duration),
    "WEBHOOK_RESPONSE_BODY_CAP": ("response_body_cap", _positive_int),
}
"""Environment variable → (field, parser)."""
