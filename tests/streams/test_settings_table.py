"""The one table of settings: the README lists it, the file layer, one-line errors, every role built from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams import ConfigError, Settings
from streams.settings import (
    SETTINGS_TABLE,
    ClaudeServerSettings,
    EnvSubscriptionSettings,
    GatewaySettings,
    GitHubSettings,
    HealthSettings,
    LoggingSettings,
    MetricsSettings,
    RoleSettings,
    SchedulerSettings,
    SmtpSettings,
    TracingSettings,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]
ROLES: tuple[type[RoleSettings], ...] = (
    Settings,
    LoggingSettings,
    TracingSettings,
    GatewaySettings,
    SchedulerSettings,
    SmtpSettings,
    ClaudeServerSettings,
    GitHubSettings,
    EnvSubscriptionSettings,
    MetricsSettings,
    HealthSettings,
)


def _readme_variables() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, re.MULTILINE)


def test_readme_lists_exactly_the_table() -> None:
    listed = _readme_variables()
    assert sorted(listed) == sorted(SETTINGS_TABLE)
    assert len(listed) == len(set(listed))


def test_every_variable_the_code_reads_is_in_the_table() -> None:
    """Every quoted variable name passed to an env lookup or a ConfigError anywhere in the product is a row."""
    found: set[str] = set()
    pattern = re.compile(r"""(?:environ|env|getenv)(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']""")
    for package in ("streams", "publishers", "consumers", "gateway", "integrations"):
        for path in (ROOT / package).rglob("*.py"):
            found.update(pattern.findall(path.read_text(encoding="utf-8")))
    assert found <= set(SETTINGS_TABLE), found - set(SETTINGS_TABLE)


def test_every_row_fills_a_field_of_its_role() -> None:
    fields = {kind.ROLE: set(kind.__struct_fields__) for kind in ROLES}
    fields["file"] = {"path"}
    for row in SETTINGS_TABLE.values():
        for role, field in ((row.role, row.field), *row.also):
            assert field in fields[role], (row.name, role, field)


def test_roles_are_built_from_the_environment() -> None:
    env = {
        "SMTP_TLS": "yes",
        "SMTP_FROM": "ops@example.com",
        "CLAUDE_WEBHOOK_SECRET": "whsec_a, whsec_b",
        "CLAUDE_COMMAND": "claude -p --model x",
        "TURBOHOOKS_DATA_DIR": "/tmp/th",
        "TURBOHOOKS_LOG_LEVEL": "debug",
        "GITHUB_TOKEN": "ghp_1",
        "TEAM_GITHUB_TOKEN": "ghp_2",
        "SLACK_EVENT_TYPES": "issue.*, comment.created",
        "GITHUB_WEBHOOK_SECRET": "s3cret",
    }
    config = load_config(env)
    smtp = config.role(SmtpSettings)
    assert (smtp.port, smtp.use_tls, smtp.start_tls, smtp.sender) == (465, True, False, "ops@example.com")
    claude = config.role(ClaudeServerSettings)
    assert claude.secrets == ("whsec_a", "whsec_b")
    assert claude.command == ("claude", "-p", "--model", "x")
    assert claude.data_dir == Path("/tmp/th") == config.role(Settings).data_dir
    assert config.role(LoggingSettings).level == "DEBUG"
    github = config.role(GitHubSettings)
    assert (github.token_for(None), github.token_for("TEAM_GITHUB_TOKEN"), github.token_for("NONE_TOKEN")) == (
        "ghp_1",
        "ghp_2",
        None,
    )
    subs = config.role(EnvSubscriptionSettings)
    assert subs.slack_event_types == ("issue.*", "comment.created")
    assert subs.claude_secret == "whsec_a"
    assert config.role(GatewaySettings).github_webhook_secret == "s3cret"
    assert SmtpSettings.from_env({"SMTP_STARTTLS": "true"}).port == 587
    assert SmtpSettings.from_env({}).port == 25


def test_file_layer_under_the_environment(tmp_path: Path) -> None:
    (tmp_path / "turbohooks.toml").write_text(
        'webhook_allow_http = true\nwebhook_allowed_hosts = ["LocalHost:9000"]\nwebhook_timeout = 10\n'
        '[smtp]\nhost = "mail.example.com"\nport = 2525\n',
        encoding="utf-8",
    )
    env = {"TURBOHOOKS_DATA_DIR": str(tmp_path), "WEBHOOK_TIMEOUT": "3s"}
    settings = Settings.from_env(env)
    assert settings.webhook_allow_http is True
    assert settings.webhook_allowed_hosts == ("localhost:9000",)
    assert settings.webhook_timeout == 3.0  # the environment wins over the file
    assert (SmtpSettings.from_env(env).host, SmtpSettings.from_env(env).port) == ("mail.example.com", 2525)
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text("webhook_retry_count = 7\n", encoding="utf-8")
    assert Settings.from_env({**env, "TURBOHOOKS_CONFIG": str(elsewhere)}).webhook_retry_count == 7


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ("webhook_alow_http = true\n", "webhook_alow_http"),
        ("[smtp]\nhots = 'x'\n", "smtp_hots"),
        ("webhook_timeout = 'soon'\n", "WEBHOOK_TIMEOUT"),
        ("turbohooks_config = 'x.toml'\n", "turbohooks_config"),
        ("not toml = = \n", "TURBOHOOKS_CONFIG"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, document: str, named: str) -> None:
    path = tmp_path / "turbohooks.toml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config({"TURBOHOOKS_CONFIG": str(path)})
    assert refused.value.variable == named
    assert "\n" not in str(refused.value)


def test_missing_named_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TURBOHOOKS_CONFIG"):
        load_config({"TURBOHOOKS_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TURBOHOOKS_LOG_LEVEL", "LOUD"),
        ("SMTP_PORT", "smtp"),
        ("SMTP_FROM", "nobody"),
        ("CLAUDE_TIMEOUT", "soon"),
        ("CLAUDE_MAX_CONCURRENT", "0"),
        ("CLAUDE_ISSUE_CONTEXT_URL", "ftp://x/{issue_id}"),
        ("CLAUDE_PUBLISH_REPLIES", "perhaps"),
        ("SLACK_WEBHOOK_URL", "hooks.slack.com/x"),
        ("SLACK_EVENT_TYPES", "isue.*"),
        ("NATS_URL", "localhost:4222"),
        ("TURBOHOOKS_DIGEST_TIME", "25:00"),
    ],
)
def test_a_bad_value_of_any_variable_is_one_line_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({variable: value})
    assert refused.value.variable == variable
    assert str(refused.value).startswith(f"turbohooks: setting {variable}: ")
    assert "\n" not in str(refused.value)


def test_log_level_names_the_choices() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({"TURBOHOOKS_LOG_LEVEL": "LOUD"})
    assert str(refused.value) == (
        "turbohooks: setting TURBOHOOKS_LOG_LEVEL: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )


def test_settings_load_without_importing_the_rest() -> None:
    """The settings need nothing but streams: a process can read them before choosing what to import."""
    others = "{'publishers', 'consumers', 'gateway', 'integrations'}"
    code = f"import sys, streams.settings; print(sorted(m for m in sys.modules if m.split('.')[0] in {others}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
