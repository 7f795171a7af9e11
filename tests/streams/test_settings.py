"""Settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import SETTINGS_VARIABLES, ConfigError, Settings, parse_duration, parse_size


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.nats_url is None
    assert settings.resolved_nats_url() == "nats://127.0.0.1:14222"
    assert settings.data_dir == Path(".turbohooks")
    assert settings.resolved_database_url().startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url().endswith("/.turbohooks/turbohooks.db")
    assert (settings.webhook_enabled, settings.webhook_timeout) == (True, 30.0)
    assert (settings.webhook_retry_count, settings.webhook_retry_delay) == (3, 5.0)


def test_design_variables_are_read() -> None:
    settings = Settings.from_env(
        {
            "NATS_URL": "nats://n:4222",
            "WEBHOOK_ENABLED": "false",
            "WEBHOOK_TIMEOUT": "10",
            "WEBHOOK_RETRY_COUNT": "5",
            "WEBHOOK_RETRY_DELAY": "2s",
            "TURBOHOOKS_STREAM_MAX_AGE": "2d",
            "TURBOHOOKS_STREAM_MAX_BYTES": "512MiB",
            "WEBHOOK_ALLOWED_HOSTS": "LocalHost:9000, claude.internal",
            "DATABASE_URL": "postgresql+asyncpg://u@h/db",
        }
    )
    assert settings.resolved_nats_url() == "nats://n:4222"
    assert settings.webhook_enabled is False
    assert settings.webhook_timeout == 10.0
    assert settings.retry_delays() == (2.0, 4.0, 8.0, 16.0, 32.0)
    assert settings.stream_max_age == 2 * 86400
    assert settings.stream_max_bytes == 512 << 20
    assert settings.webhook_allowed_hosts == ("localhost:9000", "claude.internal")
    assert settings.resolved_database_url() == "postgresql+asyncpg://u@h/db"


def test_explicit_retry_schedule_replaces_count_and_delay() -> None:
    settings = Settings.from_env({"WEBHOOK_RETRY_SCHEDULE": "5s,5m,30m,2h,5h,10h,10h", "WEBHOOK_RETRY_COUNT": "1"})
    assert settings.retry_delays() == (5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("WEBHOOK_TIMEOUT", "soon", "not a duration"),
        ("WEBHOOK_TIMEOUT", "0", "greater than zero"),
        ("WEBHOOK_RETRY_COUNT", "-1", "negative"),
        ("WEBHOOK_RETRY_COUNT", "three", "whole number"),
        ("WEBHOOK_ENABLED", "maybe", "boolean"),
        ("TURBOHOOKS_NATS_PORT", "70000", "TCP port"),
        ("TURBOHOOKS_STREAM_MAX_BYTES", "lots", "not a size"),
        ("WEBHOOK_RETRY_SCHEDULE", "5s,later", "not a duration"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert fragment in str(info.value)


def test_every_variable_maps_to_a_field() -> None:
    fields = set(Settings.__struct_fields__)
    for variable, (field, _) in SETTINGS_VARIABLES.items():
        assert field in fields, variable


def test_units() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1w") == 604800
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("-1") == -1
