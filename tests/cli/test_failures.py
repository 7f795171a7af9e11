"""No traceback reaches a user: every command, against a stopped NATS, a stopped database, every bad setting.

Each failure is one line on stderr naming its cause, and an exit code (2 for a
refused setting or input, 1 for what is unavailable).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import _common
from gateway.cli._main import app
from streams import EmbeddedNats
from streams.settings import CONFIG_VARIABLE, SETTINGS_TABLE, Variable

BIN = Path(sys.executable).parent / "turbohooks"

COMMANDS: dict[str, tuple[str, ...]] = {
    "publish": ("publish", "issue.created", "--entity-id", "1"),
    "tail": ("tail", "--no-follow"),
    "events": ("events",),
    "streams": ("streams",),
    "subscriptions list": ("subscriptions", "list"),
    "deliveries list": ("deliveries", "list"),
    "simulate": ("simulate", "--duration", "1"),
    "replay": ("replay", "--subscription", str(uuid.UUID(int=1)), "--since", "1h"),
    "worker": ("worker",),
    "recorder": ("recorder",),
    "scheduler": ("scheduler",),
    "gateway": ("gateway", "--port", "0"),
    "claude-server": ("claude-server", "--port", "0"),
}
NEEDS_NATS = tuple(name for name in COMMANDS if name not in ("events", "claude-server"))
NEEDS_DATABASE = ("subscriptions list", "deliveries list", "replay", "recorder", "gateway")

# Values a parser refuses, tried in order for each row (an empty value counts as unset).
_BAD_CANDIDATES = ("not a value!", "-1", "0", "ftp://x", "99999999999", "'unclosed")


def _bad_value(row: Variable) -> str | None:
    for candidate in _BAD_CANDIDATES:
        try:
            row.parse(candidate)
        except ValueError:
            return candidate
    return None


# Free text: no value of these is refused when read (the admin token's length is checked where it is used).
TEXT_ROWS = {name for name, row in SETTINGS_TABLE.items() if _bad_value(row) is None}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NATS_", "TURBOHOOKS_", "WEBHOOK_", "DATABASE_", "SMTP_", "CLAUDE_", "GITHUB_"))
        and not k.endswith("_WEBHOOK_URL")
    }
    env.update(TURBOHOOKS_DATA_DIR=str(tmp_path / "data"), TURBOHOOKS_STREAM_MAX_BYTES="1GiB", COLUMNS="200")
    env.update(extra)
    return env


def _assert_one_line(name: str, result: subprocess.CompletedProcess[str], *needles: str) -> None:
    shown = f"{name}: exit {result.returncode}\nstderr:\n{result.stderr}\nstdout:\n{result.stdout[-2000:]}"
    assert result.returncode in (1, 2), shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    for needle in needles:
        assert needle in lines[0], shown


def _run_all(cases: dict[str, tuple[tuple[str, ...], dict[str, str]]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the commands as a user does (subprocesses), a few at a time."""

    def one(args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(one, args, env) for name, (args, env) in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_command_against_a_stopped_nats(tmp_path: Path) -> None:
    port = _closed_port()
    env = _env(tmp_path, NATS_URL=f"nats://127.0.0.1:{port}")
    results = _run_all({name: (COMMANDS[name], env) for name in NEEDS_NATS})
    for name, result in results.items():
        _assert_one_line(name, result, "NATS", f"127.0.0.1:{port}")


def test_every_command_against_a_stopped_embedded_nats(tmp_path: Path) -> None:
    """No NATS_URL, no `turbohooks up`: the line says to start it."""
    env = _env(tmp_path, TURBOHOOKS_NATS_PORT=str(_closed_port()))
    results = _run_all({name: (COMMANDS[name], env) for name in NEEDS_NATS})
    for name, result in results.items():
        _assert_one_line(name, result, "turbohooks up")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql+asyncpg://turbo@127.0.0.1:{port}/turbo", "database"),
        ("postgresql://turbo@127.0.0.1:{port}/turbo", "DATABASE_URL"),
        ("postgres://turbo@127.0.0.1:{port}/turbo", "DATABASE_URL"),
    ],
)
def test_every_database_command_against_a_stopped_database(
    nats_server: EmbeddedNats, tmp_path: Path, url: str, needle: str
) -> None:
    env = _env(tmp_path, NATS_URL=nats_server.url, DATABASE_URL=url.format(port=_closed_port()))
    results = _run_all({name: (COMMANDS[name], env) for name in NEEDS_DATABASE})
    for name, result in results.items():
        _assert_one_line(name, result, needle)


def test_claude_server_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = _env(tmp_path, CLAUDE_WEBHOOK_SECRET="whsec_" + "A" * 43 + "=")
        result = subprocess.run(
            [str(BIN), "claude-server", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    _assert_one_line("claude-server", result, str(port))


def test_a_short_admin_token_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, TURBOHOOKS_NATS_PORT=str(_closed_port()), TURBOHOOKS_ADMIN_TOKEN="short")
    for name, result in _run_all({"gateway": (COMMANDS["gateway"], env), "up": (("up", "--port", "0"), env)}).items():
        _assert_one_line(name, result, "TURBOHOOKS_ADMIN_TOKEN")


def test_a_bad_log_level_is_one_line(tmp_path: Path) -> None:
    """The console script itself reads TURBOHOOKS_LOG_LEVEL before any command (today: a traceback)."""
    env = _env(tmp_path, TURBOHOOKS_LOG_LEVEL="chatty", TURBOHOOKS_NATS_PORT=str(_closed_port()))
    results = _run_all({"streams": (("streams",), env), "publish": (COMMANDS["publish"], env)})
    for name, result in results.items():
        _assert_one_line(name, result, "TURBOHOOKS_LOG_LEVEL")
    assert subprocess.run([str(BIN), "events"], env=env, capture_output=True, check=False).returncode == 0


# -- every bad setting, every command (in-process: the same code path as the console script, much faster) --


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    for name in os.environ:
        if name in SETTINGS_TABLE or name.endswith("_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TURBOHOOKS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NATS_URL", f"nats://127.0.0.1:{_closed_port()}")  # nothing may start for real
    yield CliRunner()
    _common._config = None


def _invoke(runner: CliRunner, args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    _common._config = None  # each invocation is a fresh process to the user
    result = runner.invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize("variable", sorted(set(SETTINGS_TABLE) - TEXT_ROWS | {CONFIG_VARIABLE}))
def test_a_bad_value_of_every_setting_is_one_line_from_every_command(runner: CliRunner, variable: str) -> None:
    value = "/nonexistent/turbohooks.toml" if variable == CONFIG_VARIABLE else _bad_value(SETTINGS_TABLE[variable])
    assert value is not None
    env = {variable: value}
    for name, args in COMMANDS.items():
        if name == "events":
            continue  # the catalog reads no setting
        _assert_one_line(f"{name} with {variable}={value!r}", _invoke(runner, args, env), variable)


def test_the_rows_no_value_is_refused_of_are_free_text() -> None:
    assert {
        "TURBOHOOKS_NATS_HOST",
        "TURBOHOOKS_METRICS_HOST",
        "TURBOHOOKS_STREAM",
        "TURBOHOOKS_ADMIN_TOKEN",
        "GITHUB_WEBHOOK_SECRET",
        "SMTP_HOST",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "CLAUDE_WEBHOOK_SECRET",
        "CLAUDE_WORKDIR",
        "GITHUB_TOKEN",
        "TURBOHOOKS_CONFIG",
        "TURBOHOOKS_DATA_DIR",
        "WEBHOOK_ALLOWED_HOSTS",
        # NATS credentials and certificate paths (issue 17): names, secrets and files, any text.
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_CREDS",
        "NATS_NKEY_SEED",
        "NATS_TLS_CA",
        "NATS_TLS_CERT",
        "NATS_TLS_KEY",
        # Field names or dotted paths to redact (issue 12): a list of any names.
        "TURBOHOOKS_REDACT_FIELDS",
    } >= TEXT_ROWS, TEXT_ROWS


def test_a_bad_key_in_the_settings_file_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "turbohooks.toml"
    config.write_text("webhook_timout = 5\n", encoding="utf-8")
    for name, args in COMMANDS.items():
        if name != "events":
            _assert_one_line(name, _invoke(runner, args, {CONFIG_VARIABLE: str(config)}), "webhook_timout")


async def test_an_app_starts_while_nats_is_down_and_its_events_wait_in_the_outbox(tmp_path: Path) -> None:
    """A FastAPI-style app opens its EventPublisher at start; NATS down must not stop it (emit_background's promise)."""
    from publishers import EventPublisher
    from streams import Settings, provision

    port = _closed_port()
    settings = Settings(nats_url=f"nats://127.0.0.1:{port}", data_dir=tmp_path, stream_max_bytes=1 << 30)
    async with EventPublisher(settings, name="app") as publisher:
        event_id = publisher.emit_background(event_type="issue.created", entity_id="i-1", data={"current": {}})
        assert publisher.outbox_pending == 1
        async with EmbeddedNats(store_dir=tmp_path / "js", port=port) as server:
            from streams import connect_nats

            nc = await connect_nats(settings, url=server.url)
            try:
                await provision(nc.jetstream(), settings)
                assert await publisher.flush(15), "the outbox is flushed once NATS answers"
                stored = await nc.jetstream().get_last_msg(settings.stream_name, "turbo.issue.created")
                assert str(event_id).encode() in stored.data
            finally:
                await nc.close()
