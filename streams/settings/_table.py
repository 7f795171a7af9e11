"""The one table of every variable turbohooks reads: name, role and field, parser, default, meaning.

The README's settings table is generated from it (:func:`markdown_table`) and a
test checks the two agree. A new setting is one row here and one field in its
role's object (``_roles.py``).
"""

from __future__ import annotations

from typing import Final

import msgspec

from ._parsers import (
    Parser,
    parse_bool,
    parse_choice,
    parse_clock,
    parse_command,
    parse_database_url,
    parse_duration,
    parse_durations,
    parse_email,
    parse_int,
    parse_list,
    parse_path,
    parse_port,
    parse_secret_keys,
    parse_size,
    parse_text,
    parse_thresholds,
    parse_url,
    parse_weekday,
    positive,
)
from ._patterns import parse_patterns
from ._roles import ENVIRONMENTS, LOG_FORMATS, LOG_LEVELS

__all__ = ("CONFIG_VARIABLE", "SETTINGS_TABLE", "Variable", "markdown_table")

CONFIG_VARIABLE: Final = "TURBOHOOKS_CONFIG"


class Variable(msgspec.Struct, frozen=True, kw_only=True):
    """One row: the variable ``name`` fills ``field`` of the role ``role`` (and the ``also`` ones)."""

    name: str
    role: str
    field: str
    parse: Parser
    default: str
    """The default as a person writes it (README); the real default is the field's."""
    meaning: str
    also: tuple[tuple[str, str], ...] = ()
    """Other ``(role, field)`` pairs filled with the same value."""
    secret: bool = False

    @property
    def key(self) -> str:
        """The key of this variable in ``turbohooks.toml``: the name in lower case."""
        return self.name.lower()


def _v(name: str, role: str, field: str, parse: Parser, default: str, meaning: str, **more: object) -> Variable:
    return Variable(name=name, role=role, field=field, parse=parse, default=default, meaning=meaning, **more)  # type: ignore[arg-type]


_DURATION = positive(parse_duration)
_HTTP = parse_url("http", "https")

_ROWS: Final = (
    _v(
        CONFIG_VARIABLE,
        "file",
        "path",
        parse_path,
        "`<data dir>/turbohooks.toml`",
        "the settings file (TOML; keys are these names in lower case)",
    ),
    # core: NATS, streams, database
    _v(
        "NATS_URL",
        "core",
        "nats_url",
        parse_url("nats", "tls", "ws", "wss", several=True),
        "unset: embedded",
        "a running NATS server to use instead of the embedded one",
    ),
    _v(
        "TURBOHOOKS_DATA_DIR",
        "core",
        "data_dir",
        parse_path,
        "`.turbohooks`",
        "JetStream store of the embedded server, SQLite files, outboxes, the settings file",
        also=(("claude_server", "data_dir"),),
    ),
    _v(
        "TURBOHOOKS_SECRET_KEY",
        "core",
        "secret_key",
        parse_secret_keys,
        "unset: generated in `<data dir>/secret-key`",
        "encrypts signing secrets, custom header values and integration credentials at rest (base64 of 32 bytes;"
        " comma-separated during a key rotation, the first encrypts)",
        secret=True,
    ),
    _v(
        "TURBOHOOKS_ENV",
        "core",
        "environment",
        parse_choice(ENVIRONMENTS),
        "`development`",
        "`development` with the embedded server (no `NATS_URL`): `http://` and loopback receivers accepted "
        "(as `WEBHOOK_ALLOW_HTTP=true` and `WEBHOOK_ALLOWED_HOSTS=localhost,127.0.0.1,::1`, unless set); "
        "`production`, or any `NATS_URL`: https and the address rules",
    ),
    _v(
        "TURBOHOOKS_NATS_HOST", "core", "nats_host", parse_text, "`127.0.0.1`", "where the embedded nats-server listens"
    ),
    _v(
        "TURBOHOOKS_NATS_PORT",
        "core",
        "nats_port",
        parse_port,
        "`14222`",
        "the embedded nats-server's port (not 4222, to stay clear of a system NATS)",
    ),
    _v(
        "NATS_USER",
        "core",
        "nats_user",
        parse_text,
        "unset: the embedded server's generated users",
        "NATS user to sign in as on an external server (with `NATS_PASSWORD`)",
    ),
    _v("NATS_PASSWORD", "core", "nats_password", parse_text, "unset", "`NATS_USER`'s password", secret=True),
    _v(
        "NATS_CREDS",
        "core",
        "nats_creds",
        parse_path,
        "unset",
        "a JWT `.creds` file to sign in with (operator/accounts servers; needs `nats-py[nkeys]`)",
    ),
    _v(
        "NATS_NKEY_SEED",
        "core",
        "nats_nkey_seed",
        parse_path,
        "unset",
        "a file holding an nkey seed to sign in with (needs `nats-py[nkeys]`)",
    ),
    _v(
        "TURBOHOOKS_NATS_TLS",
        "core",
        "nats_tls",
        parse_bool,
        "`false`",
        "the embedded nats-server requires TLS and client certificates (generated in `<data dir>/nats/tls`)",
    ),
    _v(
        "NATS_TLS_CA",
        "core",
        "nats_tls_ca",
        parse_path,
        "unset (embedded with TLS: the generated CA)",
        "CA bundle the NATS server's certificate is verified against",
    ),
    _v(
        "NATS_TLS_CERT",
        "core",
        "nats_tls_cert",
        parse_path,
        "unset (embedded with TLS: the generated one)",
        "client certificate presented to NATS (with `NATS_TLS_KEY`)",
    ),
    _v(
        "NATS_TLS_KEY", "core", "nats_tls_key", parse_path, "unset", "the client certificate's private key", secret=True
    ),
    _v(
        "DATABASE_URL",
        "core",
        "database_url",
        parse_database_url,
        "`sqlite+aiosqlite:///<data dir>/turbohooks.db`",
        "subscriptions and the delivery log; `postgresql+asyncpg://…` for PostgreSQL",
    ),
    _v(
        "TURBOHOOKS_STREAM",
        "core",
        "stream_name",
        parse_text,
        "`TURBO_EVENTS`",
        "name of the events stream (`turbo.>`)",
    ),
    _v(
        "TURBOHOOKS_STREAM_MAX_AGE",
        "core",
        "stream_max_age",
        _DURATION,
        "`7d`",
        "events older than this are dropped (the replay horizon)",
    ),
    _v(
        "TURBOHOOKS_STREAM_MAX_BYTES",
        "core",
        "stream_max_bytes",
        parse_size,
        "`10GiB`",
        "size cap of the events stream (oldest dropped first)",
    ),
    _v(
        "TURBOHOOKS_STREAM_REPLICAS",
        "core",
        "stream_replicas",
        parse_int,
        "`1`",
        "stream replicas (3 on a JetStream cluster)",
    ),
    _v(
        "TURBOHOOKS_DUPLICATE_WINDOW",
        "core",
        "duplicate_window",
        _DURATION,
        "`10m`",
        "a re-published `event_id` within it is stored once",
    ),
    _v(
        "TURBOHOOKS_PUBLISH_TIMEOUT",
        "core",
        "publish_timeout",
        _DURATION,
        "`5s`",
        "one publish's wait for JetStream's ack",
    ),
    _v(
        "TURBOHOOKS_PUBLISH_RETRY_HORIZON",
        "core",
        "publish_retry_horizon",
        _DURATION,
        "`60s`",
        "how long `emit()` retries before it raises `PublishError`",
    ),
    # delivery
    _v(
        "WEBHOOK_ENABLED",
        "core",
        "webhook_enabled",
        parse_bool,
        "`true`",
        "`false`: events are published, none delivered",
    ),
    _v("WEBHOOK_TIMEOUT", "core", "webhook_timeout", _DURATION, "`30`", "seconds one delivery attempt may take"),
    _v("WEBHOOK_RETRY_COUNT", "core", "webhook_retry_count", parse_int, "`3`", "retries after the first attempt"),
    _v(
        "WEBHOOK_RETRY_DELAY",
        "core",
        "webhook_retry_delay",
        _DURATION,
        "`5`",
        "first retry's delay in seconds; doubling, with jitter",
    ),
    _v(
        "WEBHOOK_RETRY_SCHEDULE",
        "core",
        "webhook_retry_schedule",
        parse_durations,
        "unset",
        "explicit delays, e.g. `5s,5m,30m,2h,5h,10h,10h`, replacing count and delay",
    ),
    _v(
        "WEBHOOK_RETRY_AFTER_CAP",
        "core",
        "webhook_retry_after_cap",
        _DURATION,
        "`1h`",
        "the longest `Retry-After` honoured",
    ),
    _v(
        "WEBHOOK_ALLOW_HTTP",
        "core",
        "webhook_allow_http",
        parse_bool,
        "`false` (`true` in local development: `TURBOHOOKS_ENV`)",
        "accept `http://` destinations",
    ),
    _v(
        "WEBHOOK_ALLOWED_HOSTS",
        "core",
        "webhook_allowed_hosts",
        parse_list(lambda h: h.strip().lower()),
        "empty (loopback in local development: `TURBOHOOKS_ENV`)",
        "comma-separated hosts allowed to resolve to private/loopback addresses (e.g. `localhost:9000`)",
    ),
    _v(
        "WEBHOOK_MAX_IN_FLIGHT",
        "core",
        "webhook_max_in_flight",
        parse_int,
        "`64`",
        "concurrent deliveries per subscription",
    ),
    _v(
        "TURBOHOOKS_REDACT_FIELDS",
        "core",
        "redact_fields",
        parse_list(lambda f: f.strip()),
        "empty (the built-in list still applies: `password`, `token`, `secret`, `api_key`, `authorization`, …)",
        "comma-separated field names (any depth) or dotted paths masked as `[redacted]` in the `data` of every "
        "delivery, beside the built-in list and each subscription's `redact_fields`",
    ),
    _v(
        "TURBOHOOKS_THROTTLE_RECOVERY",
        "core",
        "throttle_recovery",
        _DURATION,
        "`10s`",
        "after 429s halved a subscription's rate: the time 2xx answers take to climb it back from zero to its limit",
    ),
    _v(
        "WEBHOOK_DISABLE_AFTER_FAILURES",
        "core",
        "webhook_disable_after_failures",
        parse_int,
        "`20`",
        "consecutive failed deliveries that disable a subscription…",
    ),
    _v(
        "WEBHOOK_DISABLE_AFTER_PERIOD",
        "core",
        "webhook_disable_after_period",
        parse_duration,
        "`1d`",
        "…when failing for at least this long",
    ),
    _v(
        "WEBHOOK_PROBE_DELAY",
        "core",
        "webhook_probe_delay",
        _DURATION,
        "`1m`",
        "first probe of a disabled subscription (auto-recover), doubling after each failed one…",
    ),
    _v(
        "WEBHOOK_PROBE_MAX_DELAY",
        "core",
        "webhook_probe_max_delay",
        _DURATION,
        "`1h`",
        "…up to this",
    ),
    _v(
        "TURBOHOOKS_MAX_CAUSATION_DEPTH",
        "core",
        "max_causation_depth",
        positive(parse_int),
        "`5`",
        "events caused by deliveries in a row before the chain is stopped (loop prevention)",
    ),
    _v(
        "WEBHOOK_SECRET_GRACE",
        "core",
        "webhook_secret_grace",
        parse_duration,
        "`1d`",
        "how long a rotated-out secret keeps signing",
    ),
    _v(
        "WEBHOOK_RESPONSE_BODY_CAP",
        "core",
        "response_body_cap",
        parse_int,
        "`4096`",
        "bytes of a receiver's answer kept in the delivery log",
    ),
    _v(
        "TURBOHOOKS_TEMPLATE_MAX_OUTPUT",
        "core",
        "template_max_output",
        parse_size,
        "`256KiB`",
        "bytes a subscription's payload template may render (more: the render fails; `-1`: no limit)",
    ),
    _v(
        "TURBOHOOKS_TEMPLATE_TIMEOUT",
        "core",
        "template_timeout",
        _DURATION,
        "`50ms`",
        "how long one payload template render may take (longer: the render fails)",
    ),
    # logging and the gateway
    _v(
        "TURBOHOOKS_LOG_LEVEL",
        "logging",
        "level",
        parse_choice(LOG_LEVELS, upper=True),
        "`WARNING`",
        "log level of the CLI and processes: " + ", ".join(LOG_LEVELS),
    ),
    _v(
        "TURBOHOOKS_LOG_FORMAT",
        "logging",
        "format",
        parse_choice(LOG_FORMATS),
        "`console`",
        "`console`: readable lines with `key=value` fields; `json`: one JSON object a line (production)",
    ),
    _v(
        "TURBOHOOKS_TRACING",
        "tracing",
        "enabled",
        parse_bool,
        "`false`",
        "OpenTelemetry spans for publishes and delivery attempts; receivers get `traceparent`",
    ),
    _v(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "tracing",
        "otlp_endpoint",
        _HTTP,
        "unset: spans kept in-process",
        "with `TURBOHOOKS_TRACING`: the OTLP/HTTP collector the spans go to (`/v1/traces` is added)",
    ),
    _v(
        "TURBOHOOKS_ADMIN_TOKEN",
        "gateway",
        "admin_token",
        parse_text,
        "generated in `<data dir>/admin-token`",
        "the API's bearer token (at least 16 characters)",
        secret=True,
    ),
    _v(
        "GITHUB_WEBHOOK_SECRET",
        "gateway",
        "github_webhook_secret",
        parse_text,
        "unset: inbound refused",
        "verifies `X-Hub-Signature-256` of `POST /api/inbound/github`",
        secret=True,
    ),
    # the scheduler
    _v(
        "TURBOHOOKS_DUE_THRESHOLDS",
        "scheduler",
        "due_thresholds",
        parse_thresholds,
        "`7d,3d,1d`",
        "when to warn before a due date (only the tightest reached fires)",
    ),
    _v(
        "TURBOHOOKS_STARTING_SOON",
        "scheduler",
        "starting_soon",
        _DURATION,
        "`15m`",
        "how long before a calendar event `calendar.event_starting_soon` fires",
    ),
    _v(
        "TURBOHOOKS_DIGEST_TIME",
        "scheduler",
        "digest_time",
        parse_clock,
        "`09:00`",
        "when the daily digest and the weekly report go out (UTC)",
    ),
    _v(
        "TURBOHOOKS_WEEKLY_REPORT_DAY",
        "scheduler",
        "weekly_report_day",
        parse_weekday,
        "`monday`",
        "the weekly report's day",
    ),
    # health and alerts
    _v(
        "TURBOHOOKS_METRICS_SUBSCRIPTIONS",
        "health",
        "metrics_subscriptions",
        parse_int,
        "`1000`",
        "subscriptions with their own gauges on the gateway's `/metrics` (bounds the label values)",
    ),
    _v(
        "TURBOHOOKS_ALERT_INTERVAL",
        "health",
        "alert_interval",
        _DURATION,
        "`15s`",
        "how often the alerts are evaluated",
    ),
    _v(
        "TURBOHOOKS_ALERT_WINDOW",
        "health",
        "alert_window",
        _DURATION,
        "`5m`",
        "the window of the failure-rate, timeout, 401/403 and dead-letter alerts",
    ),
    _v(
        "TURBOHOOKS_ALERT_FAILURE_RATE",
        "health",
        "alert_failure_rate",
        parse_int,
        "`20`",
        "percent of a subscription's attempts failing in the window that raises `failure_rate`",
    ),
    _v(
        "TURBOHOOKS_ALERT_MIN_ATTEMPTS",
        "health",
        "alert_min_attempts",
        parse_int,
        "`20`",
        "attempts in the window before `failure_rate` is judged",
    ),
    _v(
        "TURBOHOOKS_ALERT_TIMEOUTS",
        "health",
        "alert_timeouts",
        parse_int,
        "`5`",
        "timed-out attempts that raise `timeouts`",
    ),
    _v(
        "TURBOHOOKS_ALERT_AUTH_FAILURES",
        "health",
        "alert_auth_failures",
        parse_int,
        "`1`",
        "401/403 answers in the window that raise `auth_failures`",
    ),
    _v(
        "TURBOHOOKS_ALERT_DEAD_LETTERS",
        "health",
        "alert_dead_letters",
        parse_int,
        "`1`",
        "new dead letters in the window that raise `dead_letters`",
    ),
    _v(
        "TURBOHOOKS_ALERT_LAG",
        "health",
        "alert_lag",
        _DURATION,
        "`5m`",
        "age of a subscription's oldest waiting event that raises `lag`",
    ),
    _v(
        "TURBOHOOKS_ALERT_SILENCE",
        "health",
        "alert_silence",
        _DURATION,
        "`30s`",
        "a worker, recorder or scheduler silent this long (no heartbeat) raises `process_silent`",
    ),
    # e-mail
    _v("SMTP_HOST", "smtp", "host", parse_text, "`localhost`", "the SMTP server of the e-mail integration"),
    _v("SMTP_PORT", "smtp", "port", parse_port, "`25` (465 with TLS, 587 with STARTTLS)", "its port"),
    _v("SMTP_USERNAME", "smtp", "username", parse_text, "unset", "SMTP login"),
    _v("SMTP_PASSWORD", "smtp", "password", parse_text, "unset", "SMTP password", secret=True),
    _v(
        "SMTP_STARTTLS",
        "smtp",
        "start_tls",
        parse_bool,
        "unset: when offered",
        "`true` requires STARTTLS, `false` never uses it",
    ),
    _v("SMTP_TLS", "smtp", "use_tls", parse_bool, "`false`", "TLS from the first byte (port 465)"),
    _v("SMTP_FROM", "smtp", "sender", parse_email, "`turbohooks@localhost`", "the `From` address"),
    # the Claude server
    _v(
        "CLAUDE_WEBHOOK_SECRET",
        "claude_server",
        "secrets",
        parse_list(),
        "unset",
        "the Claude subscription's `whsec_` secret (comma-separated: several); `env-claude` signs with the first",
        secret=True,
        also=(("subscriptions", "claude_secrets"),),
    ),
    _v(
        "CLAUDE_COMMAND",
        "claude_server",
        "command",
        parse_command,
        "`claude -p`",
        "the command `claude-server` runs, the prompt on its standard input",
    ),
    _v("CLAUDE_TIMEOUT", "claude_server", "timeout", _DURATION, "`600s`", "a run older than this is killed"),
    _v(
        "CLAUDE_MAX_CONCURRENT",
        "claude_server",
        "max_concurrent",
        positive(parse_int),
        "`2`",
        "runs at once, across issues",
    ),
    _v(
        "CLAUDE_WORKDIR",
        "claude_server",
        "workdir",
        parse_path,
        "the current directory",
        "the command's working directory",
    ),
    _v(
        "CLAUDE_ISSUE_CONTEXT_URL",
        "claude_server",
        "issue_context_url",
        _HTTP,
        "unset",
        "fetched into the prompt, `{issue_id}` replaced",
    ),
    _v(
        "CLAUDE_PUBLISH_REPLIES",
        "claude_server",
        "publish_replies",
        parse_bool,
        "`false`",
        "publish a run's output as the AI's `comment.created`",
    ),
    # GitHub
    _v(
        "GITHUB_TOKEN",
        "github",
        "token",
        parse_text,
        "unset",
        "token (`issues: write`) of a GitHub subscription naming no other `*_TOKEN` in `token_env`",
        secret=True,
    ),
    # metrics (`up` serves every role's through the gateway's /metrics)
    _v(
        "TURBOHOOKS_METRICS_HOST", "metrics", "host", parse_text, "`127.0.0.1`", "where `--metrics-port` servers listen"
    ),
    _v(
        "TURBOHOOKS_WORKER_METRICS_PORT",
        "metrics",
        "worker_port",
        parse_port,
        "unset (off)",
        "port of `turbohooks worker`'s `/metrics` (`--metrics-port`)",
    ),
    _v(
        "TURBOHOOKS_RECORDER_METRICS_PORT",
        "metrics",
        "recorder_port",
        parse_port,
        "unset (off)",
        "port of `turbohooks recorder`'s `/metrics` (`--metrics-port`)",
    ),
    _v(
        "TURBOHOOKS_SCHEDULER_METRICS_PORT",
        "metrics",
        "scheduler_port",
        parse_port,
        "unset (off)",
        "port of `turbohooks scheduler`'s `/metrics` (`--metrics-port`)",
    ),
    _v(
        "CLAUDE_METRICS_PORT",
        "metrics",
        "claude_server_port",
        parse_port,
        "unset (off)",
        "port of `turbohooks claude-server`'s `/metrics` (`--metrics-port`)",
    ),
    _v(
        "TURBOHOOKS_METRICS_SUBSCRIPTION_LABELS",
        "metrics",
        "subscription_labels",
        parse_int,
        "`1000`",
        "per-subscription delivery series while a worker runs at most this many subscriptions (0: never)",
    ),
    # subscriptions from the environment
    _v("SLACK_WEBHOOK_URL", "subscriptions", "slack_url", _HTTP, "unset", "creates the subscription `env-slack`"),
    _v(
        "SLACK_EVENT_TYPES",
        "subscriptions",
        "slack_event_types",
        parse_patterns,
        "a notification set",
        "its event type patterns (at creation)",
    ),
    _v("DISCORD_WEBHOOK_URL", "subscriptions", "discord_url", _HTTP, "unset", "creates `env-discord`"),
    _v(
        "DISCORD_EVENT_TYPES",
        "subscriptions",
        "discord_event_types",
        parse_patterns,
        "a notification set",
        "its event type patterns (at creation)",
    ),
    _v("CLAUDE_WEBHOOK_URL", "subscriptions", "claude_url", _HTTP, "unset", "creates `env-claude`"),
    _v(
        "CLAUDE_EVENT_TYPES",
        "subscriptions",
        "claude_event_types",
        parse_patterns,
        "`comment.created`",
        "its event type patterns (at creation)",
    ),
)

SETTINGS_TABLE: Final = {row.name: row for row in _ROWS}
"""Every variable turbohooks reads, by name, in the README's order."""


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines.extend(f"| `{row.name}` | {row.default} | {row.meaning} |" for row in _ROWS)
    return "\n".join(lines) + "\n"
