"""Settings: one table of variables, one set of parsers, one typed object per role.

A program reads its configuration once, at start, and passes each part the object
of its role::

    config = load_config()                     # defaults ← turbohooks.toml ← environment
    settings = config.role(Settings)           # NATS, streams, database, delivery
    smtp = config.role(SmtpSettings)           # the e-mail integration's worker

``Settings.from_env()`` (every role has it) is the same in one call. Every
variable is a row of :data:`SETTINGS_TABLE`; a bad value, or a key of the file
that is not a setting, raises :class:`~streams.ConfigError` naming it.
"""

from ._base import RoleSettings
from ._load import CONFIG_FILE, Config, config_path, load_config
from ._parsers import (
    Parser,
    parse_bool,
    parse_choice,
    parse_clock,
    parse_command,
    parse_duration,
    parse_durations,
    parse_email,
    parse_int,
    parse_list,
    parse_path,
    parse_port,
    parse_size,
    parse_text,
    parse_thresholds,
    parse_url,
    parse_weekday,
    positive,
)
from ._patterns import parse_patterns
from ._roles import (
    LOG_FORMATS,
    LOG_LEVELS,
    ClaudeServerSettings,
    EnvSubscriptionSettings,
    GatewaySettings,
    GitHubSettings,
    HealthSettings,
    LoggingSettings,
    MetricsSettings,
    SchedulerSettings,
    Settings,
    SmtpSettings,
    TracingSettings,
)
from ._table import CONFIG_VARIABLE, SETTINGS_TABLE, Variable, markdown_table

SETTINGS_VARIABLES = {name: (row.field, row.parse) for name, row in SETTINGS_TABLE.items() if row.role == "core"}
"""The variables of :class:`Settings`: name → (field, parser). Every variable: :data:`SETTINGS_TABLE`."""

SCHEDULER_VARIABLES = {name: (row.field, row.parse) for name, row in SETTINGS_TABLE.items() if row.role == "scheduler"}
"""The variables of :class:`SchedulerSettings`: name → (field, parser)."""

__all__ = (
    "CONFIG_FILE",
    "CONFIG_VARIABLE",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SCHEDULER_VARIABLES",
    "SETTINGS_TABLE",
    "SETTINGS_VARIABLES",
    "ClaudeServerSettings",
    "Config",
    "EnvSubscriptionSettings",
    "GatewaySettings",
    "GitHubSettings",
    "HealthSettings",
    "LoggingSettings",
    "MetricsSettings",
    "Parser",
    "RoleSettings",
    "SchedulerSettings",
    "Settings",
    "SmtpSettings",
    "TracingSettings",
    "Variable",
    "config_path",
    "load_config",
    "markdown_table",
    "parse_bool",
    "parse_choice",
    "parse_clock",
    "parse_command",
    "parse_duration",
    "parse_durations",
    "parse_email",
    "parse_int",
    "parse_list",
    "parse_path",
    "parse_patterns",
    "parse_port",
    "parse_size",
    "parse_text",
    "parse_thresholds",
    "parse_url",
    "parse_weekday",
    "positive",
)
