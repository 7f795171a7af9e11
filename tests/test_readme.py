"""The README delivers word for word: its quick start and subscriptions walkthrough, run as typed.

The shell blocks marked ``<!-- readme-test: quickstart -->`` and
``<!-- readme-test: walkthrough -->`` are run in order, in a fresh folder (so
``.turbohooks`` is a new data dir) with free ports. Only two things are
substituted: ``make up`` becomes ``turbohooks up`` started in the background
(the data dir and NATS port through the environment, the gateway on a free
port), and ``.venv/bin/turbohooks`` the venv's script. The commands that keep
running (``make up``, ``turbohooks receive``) are started in the background;
every other line must exit 0 without a traceback. Then the event must have
arrived at the local receiver, signed, and be in ``deliveries list``, within
60 s.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "turbohooks"
VENV_COMMAND = ".venv/bin/turbohooks"
RECEIVER_PORT = 9000  # the README's
_MARK = re.compile(r"<!-- readme-test: (?P<name>[a-z-]+) -->\s*```(?:bash|sh)\n(?P<body>.*?)```", re.DOTALL)


def readme_blocks(*names: str) -> list[tuple[str, list[str]]]:
    """(name, command lines) of the README's marked shell blocks of ``names``, in README order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    for match in _MARK.finditer(text):
        if match.group("name") not in names:
            continue
        lines: list[str] = []
        pending = ""
        for raw in match.group("body").splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if line and not line.startswith("#"):
                lines.append(line)
        blocks.append((match.group("name"), lines))
    return blocks


def test_the_marked_blocks_are_there() -> None:
    blocks = readme_blocks("quickstart", "walkthrough")
    assert [name for name, _ in blocks] == ["quickstart", "quickstart", "walkthrough", "walkthrough"]
    commands = [line for _, lines in blocks for line in lines]
    assert commands[0] == "make up"
    assert any("subscriptions create" in line for line in commands)
    for line in commands:
        assert line == "make up" or line.startswith(VENV_COMMAND + " "), f"only turbohooks commands: {line!r}"
        assert "<" not in line and "|" not in line, f"a placeholder or a pipeline cannot be typed: {line!r}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Background:
    """The long-running commands of the README, each with its output in a file; stopped at the end."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str]) -> Path:
        log = self.folder / f"{name}.log"
        handle = log.open("wb")
        process = subprocess.Popen(argv, cwd=self.folder, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self.processes.append((process, log))
        return log

    def stop(self) -> None:
        for process, _ in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(2)  # SIGINT, as Ctrl-C
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait(condition: object, what: str, timeout: float, logs: Background) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        for process, log in logs.processes:
            assert process.poll() is None, f"{log.name} exited:\n{log.read_text(errors='replace')}"
        time.sleep(0.5)
    output = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for _, log in logs.processes)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{output}")


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Background]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "TURBOHOOKS_", "WEBHOOK_", "DATABASE_"))}
    env = {
        **keep,
        "TURBOHOOKS_DATA_DIR": str(tmp_path / ".turbohooks"),
        "TURBOHOOKS_NATS_PORT": str(_free_port()),
        "TURBOHOOKS_STREAM_MAX_BYTES": "1GiB",
        "COLUMNS": "100",
    }
    runs = Background(tmp_path, env)
    try:
        yield runs
    finally:
        runs.stop()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_readme_quick_start_and_walkthrough_deliver_word_for_word(background: Background) -> None:
    if _port_taken(RECEIVER_PORT):
        pytest.skip(f"port {RECEIVER_PORT} (the README's receiver) is taken on this machine")
    gateway_port = _free_port()
    health = f"http://127.0.0.1:{gateway_port}/health"

    def up() -> bool:
        try:
            return httpx.get(health, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    receiver_log: Path | None = None
    for _name, lines in readme_blocks("quickstart", "walkthrough"):
        for line in lines:
            if line == "make up":
                background.start("up", [str(BIN), "up", "--port", str(gateway_port)])
                _wait(up, "`turbohooks up` to serve", 90, background)
                continue
            argv = shlex.split(line)
            assert argv[0] == VENV_COMMAND
            argv[0] = str(BIN)
            if argv[1] == "receive":
                receiver_log = background.start("receive", argv)
                _wait(lambda: _port_taken(RECEIVER_PORT), "the receiver to listen", 30, background)
                continue
            result = subprocess.run(
                argv, cwd=background.folder, env=background.env, capture_output=True, text=True, timeout=90, check=False
            )
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
            assert "Traceback" not in result.stdout + result.stderr, line
    assert receiver_log is not None, "the walkthrough starts the local receiver"

    def delivered() -> bool:
        listed = subprocess.run(
            [str(BIN), "deliveries", "list", "--subscription", "local", "--json"],
            cwd=background.folder,
            env=background.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        rows = json.loads(listed.stdout) if listed.returncode == 0 else []
        return any(row["event_type"] == "issue.created" and row["status"] == "success" for row in rows)

    _wait(delivered, "the issue.created delivery in `deliveries list`", 60, background)
    received = receiver_log.read_text(errors="replace")
    assert "issue.created" in received and "signature ok (local)" in received, received
    assert "signature BAD" not in received, received
