"""The settings objects, one per role; every field is filled from a row of :data:`~streams.settings.SETTINGS_TABLE`.

Which process reads which: every command reads :class:`Settings` (NATS, streams,
delivery) and :class:`LoggingSettings`; ``turbohooks up`` and the gateway add
:class:`GatewaySettings`, :class:`SchedulerSettings`, :class:`EnvSubscriptionSettings` and
:class:`HealthSettings` (the health gauges' bound, the alerts);
a worker of the e-mail or GitHub integration adds :class:`SmtpSettings` /
:class:`GitHubSettings`; ``turbohooks claude-server`` reads :class:`ClaudeServerSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time as clock_time
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import msgspec

from ._base import RoleSettings

__all__ = (
    "ENVIRONMENTS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LOOPBACK_HOSTS",
    "ClaudeServerSettings",
    "EnvSubscriptionSettings",
    "GatewaySettings",
    "GitHubSettings",
    "HealthSettings",
    "LoggingSettings",
    "MetricsSettings",
    "SchedulerSettings",
    "Settings",
    "SmtpSettings",
    "TracingSettings",
)

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("console", "json")
"""``TURBOHOOKS_LOG_FORMAT``'s values: readable lines (development) or one JSON object a line (production)."""
ENVIRONMENTS: Final = ("development", "production")
"""``TURBOHOOKS_ENV``'s values."""
LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
"""The hosts local development allows (``WEBHOOK_ALLOWED_HOSTS`` when it is not set)."""


class Settings(RoleSettings, frozen=True, kw_only=True):
    """NATS, the streams, the database and delivery: what every process of turbohooks reads."""

    ROLE: ClassVar[str] = "core"

    nats_url: str | None = None
    """``NATS_URL``: a running NATS server to use. Unset: the embedded one is used."""
    data_dir: Path = Path(".turbohooks")
    """``TURBOHOOKS_DATA_DIR``: the embedded server's store, the SQLite files, the admin token."""
    secret_key: tuple[str, ...] = ()
    """``TURBOHOOKS_SECRET_KEY``: base64 keys encrypting secrets at rest (the first encrypts); unset: the key file."""
    environment: str = "development"
    """``TURBOHOOKS_ENV``: ``development`` (with the embedded server: http and loopback receivers accepted) or
    ``production`` (https and the address rules, always)."""
    nats_host: str = "127.0.0.1"
    """``TURBOHOOKS_NATS_HOST``: where the embedded nats-server listens."""
    nats_port: int = 14222
    """``TURBOHOOKS_NATS_PORT``: the embedded nats-server's port (not 4222, to stay clear of a system NATS)."""
    nats_user: str | None = None
    """``NATS_USER``: the NATS user to sign in as (an external server); with ``NATS_PASSWORD``."""
    nats_password: str | None = None
    """``NATS_PASSWORD``: ``NATS_USER``'s password."""
    nats_creds: Path | None = None
    """``NATS_CREDS``: a JWT ``.creds`` file (operator/accounts servers; needs ``nats-py[nkeys]``)."""
    nats_nkey_seed: Path | None = None
    """``NATS_NKEY_SEED``: a file holding an nkey seed (``SU…``) to sign in with (needs ``nats-py[nkeys]``)."""
    nats_tls: bool = False
    """``TURBOHOOKS_NATS_TLS``: the embedded server requires TLS and client certificates (generated in the data dir)."""
    nats_tls_ca: Path | None = None
    """``NATS_TLS_CA``: the CA bundle the server's certificate is verified against."""
    nats_tls_cert: Path | None = None
    """``NATS_TLS_CERT``: the client certificate presented to the server (with ``NATS_TLS_KEY``)."""
    nats_tls_key: Path | None = None
    """``NATS_TLS_KEY``: the client certificate's private key."""
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
    redact_fields: tuple[str, ...] = ()
    """``TURBOHOOKS_REDACT_FIELDS``: field names or paths masked in every delivery, beside the built-in list."""
    throttle_recovery: float = 10.0
    """``TURBOHOOKS_THROTTLE_RECOVERY``: seconds of 2xx answers a rate cut by 429s takes to climb back from zero."""
    webhook_disable_after_failures: int = 20
    """``WEBHOOK_DISABLE_AFTER_FAILURES``: consecutive failed deliveries that disable a subscription."""
    webhook_disable_after_period: float = 86400.0
    """``WEBHOOK_DISABLE_AFTER_PERIOD``: ...and only when failing for at least this long."""
    webhook_probe_delay: float = 60.0
    """``WEBHOOK_PROBE_DELAY``: the first probe of a disabled subscription, doubling after each failed one."""
    webhook_probe_max_delay: float = 3600.0
    """``WEBHOOK_PROBE_MAX_DELAY``: the longest pause between probes."""
    max_causation_depth: int = 5
    """``TURBOHOOKS_MAX_CAUSATION_DEPTH``: events caused by deliveries in a row before the chain stops."""
    webhook_secret_grace: float = 86400.0
    """``WEBHOOK_SECRET_GRACE``: how long a rotated-out secret keeps signing."""
    response_body_cap: int = 4096
    """``WEBHOOK_RESPONSE_BODY_CAP``: bytes of a receiver's answer kept in the delivery log."""
    template_max_output: int = 256 * 1024
    """``TURBOHOOKS_TEMPLATE_MAX_OUTPUT``: bytes a payload template may render; larger is a failed render."""
    template_timeout: float = 0.05
    """``TURBOHOOKS_TEMPLATE_TIMEOUT``: seconds one payload template render may take."""

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Self:
        # Local development (the embedded server, TURBOHOOKS_ENV unset or development): a receiver on this
        # machine over http is what a first try uses; every process reading the same settings agrees.
        if values.get("environment", "development") == "development" and values.get("nats_url") is None:
            values.setdefault("webhook_allow_http", True)
            values.setdefault("webhook_allowed_hosts", LOOPBACK_HOSTS)
        return cls(**values)

    @property
    def local_development(self) -> bool:
        """The embedded server and ``TURBOHOOKS_ENV`` unset or ``development``: http and loopback receivers are
        accepted unless ``WEBHOOK_ALLOW_HTTP`` / ``WEBHOOK_ALLOWED_HOSTS`` say otherwise."""
        return self.environment == "development" and self.nats_url is None

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


class LoggingSettings(RoleSettings, frozen=True, kw_only=True):
    """How much the CLI and the processes log."""

    ROLE: ClassVar[str] = "logging"

    level: str = "WARNING"
    """``TURBOHOOKS_LOG_LEVEL``: one of :data:`LOG_LEVELS`."""
    format: str = "console"
    """``TURBOHOOKS_LOG_FORMAT``: one of :data:`LOG_FORMATS`."""


class TracingSettings(RoleSettings, frozen=True, kw_only=True):
    """OpenTelemetry traces: off unless asked for; exported over OTLP/HTTP when an endpoint is set."""

    ROLE: ClassVar[str] = "tracing"

    enabled: bool = False
    """``TURBOHOOKS_TRACING``: spans for each publish and delivery attempt, ``traceparent`` to receivers."""
    otlp_endpoint: str | None = None
    """``OTEL_EXPORTER_OTLP_ENDPOINT``: the collector's base URL (``/v1/traces`` is added); unset: kept in-process."""


class MetricsSettings(RoleSettings, frozen=True, kw_only=True):
    """Where each separately started process serves its Prometheus metrics (``up``: the gateway's ``/metrics``)."""

    ROLE: ClassVar[str] = "metrics"

    host: str = "127.0.0.1"
    """``TURBOHOOKS_METRICS_HOST``: the address the ``--metrics-port`` servers listen on."""
    worker_port: int | None = None
    """``TURBOHOOKS_WORKER_METRICS_PORT``: ``turbohooks worker``'s ``/metrics``; unset: not served."""
    recorder_port: int | None = None
    """``TURBOHOOKS_RECORDER_METRICS_PORT``: ``turbohooks recorder``'s ``/metrics``; unset: not served."""
    scheduler_port: int | None = None
    """``TURBOHOOKS_SCHEDULER_METRICS_PORT``: ``turbohooks scheduler``'s ``/metrics``; unset: not served."""
    claude_server_port: int | None = None
    """``CLAUDE_METRICS_PORT``: ``turbohooks claude-server``'s ``/metrics``; unset: not served."""
    subscription_labels: int = 1000
    """``TURBOHOOKS_METRICS_SUBSCRIPTION_LABELS``: per-subscription series while a worker runs at most this many
    subscriptions (0: never); above it they are dropped, so the label's values stay bounded."""


class GatewaySettings(RoleSettings, frozen=True, kw_only=True):
    """The gateway's secrets: the admin token and the inbound GitHub webhook's secret."""

    ROLE: ClassVar[str] = "gateway"

    admin_token: str | None = None
    """``TURBOHOOKS_ADMIN_TOKEN``: the API's bearer token; unset: ``<data dir>/admin-token`` (generated)."""
    github_webhook_secret: str | None = None
    """``GITHUB_WEBHOOK_SECRET``: verifies ``X-Hub-Signature-256`` of ``POST /api/inbound/github``."""


class SchedulerSettings(RoleSettings, frozen=True, kw_only=True):
    """The scheduler's settings (the time-based events)."""

    ROLE: ClassVar[str] = "scheduler"

    due_thresholds: tuple[float, ...] = (7 * 86400.0, 3 * 86400.0, 86400.0)
    """``TURBOHOOKS_DUE_THRESHOLDS``: seconds before a due date to warn, longest first (``7d,3d,1d``)."""
    starting_soon: float = 900.0
    """``TURBOHOOKS_STARTING_SOON``: how long before a calendar event it is "starting soon" (``15m``)."""
    digest_time: clock_time = clock_time(9, 0)
    """``TURBOHOOKS_DIGEST_TIME``: when the daily digest and the weekly report go out, UTC (``09:00``)."""
    weekly_report_day: int = 0
    """``TURBOHOOKS_WEEKLY_REPORT_DAY``: the weekly report's day, 0 = Monday (``monday``)."""


class HealthSettings(RoleSettings, frozen=True, kw_only=True):
    """Per-subscription health and its alerts: the bounds, and when each alert is raised."""

    ROLE: ClassVar[str] = "health"

    metrics_subscriptions: int = 1000
    """``TURBOHOOKS_METRICS_SUBSCRIPTIONS``: subscriptions with their own gauges on ``/metrics`` (label bound)."""
    alert_interval: float = 15.0
    """``TURBOHOOKS_ALERT_INTERVAL``: seconds between two evaluations of the alerts."""
    alert_window: float = 300.0
    """``TURBOHOOKS_ALERT_WINDOW``: the window of the failure, timeout, 401/403 and dead-letter alerts."""
    alert_failure_rate: int = 20
    """``TURBOHOOKS_ALERT_FAILURE_RATE``: percent of failed attempts in the window that raises the alert."""
    alert_min_attempts: int = 20
    """``TURBOHOOKS_ALERT_MIN_ATTEMPTS``: attempts in the window before the failure rate counts."""
    alert_timeouts: int = 5
    """``TURBOHOOKS_ALERT_TIMEOUTS``: timed-out attempts in the window that raise the alert."""
    alert_auth_failures: int = 1
    """``TURBOHOOKS_ALERT_AUTH_FAILURES``: 401/403 answers in the window that raise the alert."""
    alert_dead_letters: int = 1
    """``TURBOHOOKS_ALERT_DEAD_LETTERS``: new dead letters in the window that raise the alert."""
    alert_lag: float = 300.0
    """``TURBOHOOKS_ALERT_LAG``: age of the oldest waiting event that raises the lag alert."""
    alert_silence: float = 30.0
    """``TURBOHOOKS_ALERT_SILENCE``: a process whose last heartbeat is older than this raises ``process_silent``."""


class SmtpSettings(RoleSettings, frozen=True, kw_only=True):
    """Where and how the e-mail integration sends mail."""

    ROLE: ClassVar[str] = "smtp"

    host: str = "localhost"
    """``SMTP_HOST``."""
    port: int = 25
    """``SMTP_PORT``; default 465 with ``SMTP_TLS``, 587 with ``SMTP_STARTTLS``, else 25."""
    username: str | None = None
    """``SMTP_USERNAME``."""
    password: str | None = None
    """``SMTP_PASSWORD``."""
    start_tls: bool | None = None
    """``SMTP_STARTTLS``: true requires STARTTLS, false never uses it, unset uses it when the server offers it."""
    use_tls: bool = False
    """``SMTP_TLS``: TLS from the first byte (port 465)."""
    sender: str = "turbohooks@localhost"
    """``SMTP_FROM``: the ``From`` address."""

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Self:
        use_tls = bool(values.get("use_tls", False))
        start_tls = values.get("start_tls")
        values.setdefault("port", 465 if use_tls else 587 if start_tls else 25)
        if use_tls:
            values["start_tls"] = False
        return cls(**values)


class ClaudeServerSettings(RoleSettings, frozen=True, kw_only=True):
    """``turbohooks claude-server``: the receiving end that runs Claude Code per event."""

    ROLE: ClassVar[str] = "claude_server"

    secrets: tuple[str, ...] = ()
    """``CLAUDE_WEBHOOK_SECRET``: the subscription's ``whsec_`` secret (comma-separated: several)."""
    command: tuple[str, ...] = ("claude", "-p")
    """``CLAUDE_COMMAND``: the command line; the prompt arrives on its standard input."""
    timeout: float = 600.0
    """``CLAUDE_TIMEOUT``: a run older than this is killed."""
    max_concurrent: int = 2
    """``CLAUDE_MAX_CONCURRENT``: runs at once, across issues."""
    workdir: Path | None = None
    """``CLAUDE_WORKDIR``: the command's working directory (the repository Claude works in)."""
    issue_context_url: str | None = None
    """``CLAUDE_ISSUE_CONTEXT_URL``: fetched into the prompt, ``{issue_id}`` replaced."""
    publish_replies: bool = False
    """``CLAUDE_PUBLISH_REPLIES``: publish a successful run's output as the AI's ``comment.created``."""
    data_dir: Path = Path(".turbohooks")
    """``TURBOHOOKS_DATA_DIR``: where ``claude-runs.jsonl`` is kept."""


class GitHubSettings(RoleSettings, frozen=True, kw_only=True):
    """The GitHub integration's credentials, read once at start."""

    ROLE: ClassVar[str] = "github"

    token: str | None = None
    """``GITHUB_TOKEN``: the token of a subscription that names none (``issues: write``)."""
    named_tokens: dict[str, str] = msgspec.field(default_factory=dict)
    """Every ``*_TOKEN`` variable of the environment when the settings were read, for a
    subscription whose ``integration_config.token_env`` names another variable."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        return {"named_tokens": {k: v for k, v in environ.items() if k.endswith("_TOKEN") and v.strip()}}

    def token_for(self, variable: str | None) -> str | None:
        """The token of a subscription: the variable it names (``token_env``), else ``GITHUB_TOKEN``."""
        if variable is None or variable == "GITHUB_TOKEN":
            return self.token
        return self.named_tokens.get(variable) or None


class EnvSubscriptionSettings(RoleSettings, frozen=True, kw_only=True):
    """The subscriptions the environment asks for (created at start by ``turbohooks up`` and the gateway)."""

    ROLE: ClassVar[str] = "subscriptions"

    slack_url: str | None = None
    """``SLACK_WEBHOOK_URL``: creates ``env-slack``."""
    slack_event_types: tuple[str, ...] = ()
    """``SLACK_EVENT_TYPES``: its patterns (at creation; empty: a useful default)."""
    discord_url: str | None = None
    """``DISCORD_WEBHOOK_URL``: creates ``env-discord``."""
    discord_event_types: tuple[str, ...] = ()
    """``DISCORD_EVENT_TYPES``."""
    claude_url: str | None = None
    """``CLAUDE_WEBHOOK_URL``: creates ``env-claude``."""
    claude_event_types: tuple[str, ...] = ()
    """``CLAUDE_EVENT_TYPES``."""
    claude_secrets: tuple[str, ...] = ()
    """``CLAUDE_WEBHOOK_SECRET`` (as the Claude server reads it)."""

    @property
    def claude_secret(self) -> str | None:
        """The first ``CLAUDE_WEBHOOK_SECRET``: ``env-claude`` signs with it, so both ends share it."""
        return self.claude_secrets[0] if self.claude_secrets else None
