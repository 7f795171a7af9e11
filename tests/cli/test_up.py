"""`turbohooks up` as a user runs it: one configuration, what it prints, clean stops, one `up` per data dir."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

BIN = Path(sys.executable).parent / "turbohooks"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NATS_", "TURBOHOOKS_", "WEBHOOK_", "DATABASE_", "SMTP_", "CLAUDE_", "GITHUB_"))
        and not k.endswith("_WEBHOOK_URL")
    }
    env.update(TURBOHOOKS_DATA_DIR=str(data_dir), TURBOHOOKS_STREAM_MAX_BYTES="1GiB", COLUMNS="200")
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Up:
    """A `turbohooks up` in its own process group, as a terminal runs it; its output collected by a thread."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    gateway: str
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path, *args: str, **extra: str) -> Up:
        env = _env(data_dir, TURBOHOOKS_NATS_PORT=str(_free_port()), **extra)
        port = _free_port()
        process = subprocess.Popen(
            [str(BIN), "up", "--port", str(port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: the test plays the terminal's Ctrl-C with killpg
        )
        up = cls(process, env, f"http://127.0.0.1:{port}")
        threading.Thread(target=up._read, daemon=True).start()
        return up

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"up exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.gateway}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the gateway never answered /health:\n{self.output()}")

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not printed:\n{self.output()}")

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in _processes_using(Path(self.env["TURBOHOOKS_DATA_DIR"])):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of ``pid`` from /proc, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def _live(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _processes_using(data_dir: Path) -> list[int]:
    """Live processes whose command line names ``data_dir`` (the embedded nats-server's ``-sd``)."""
    found = []
    needle = str(data_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and _live(int(entry.name)):
            found.append(int(entry.name))
    return found


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.kill()


# -- stops ------------------------------------------------------------------------------------------------

TRIES = int(os.environ.get("TURBOHOOKS_TEST_UP_TRIES", "20"))
STOP_BOUND = 10.0
"""Seconds a Ctrl-C may take: WEBHOOK_TIMEOUT is 5 s in these runs, plus the server's flush."""


def _start_and_stop(data_dir: Path) -> tuple[float, str]:
    up = Up.start(data_dir, "--quiet", WEBHOOK_TIMEOUT="5")
    try:
        up.wait_healthy()
        servers = _processes_using(data_dir)
        assert servers, f"no embedded nats-server seen:\n{up.output()}"
        started = time.monotonic()
        up.ctrl_c()
        try:
            code = up.process.wait(timeout=STOP_BOUND + 20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"up ignored Ctrl-C:\n{up.output()}") from None
        took = time.monotonic() - started
        assert code == 0, up.output()
        assert took < STOP_BOUND, f"stopping took {took:.1f}s:\n{up.output()}"
        deadline = time.monotonic() + 2
        while (left := _processes_using(data_dir) + _group_members(up.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"left running after Ctrl-C: {left}\n{up.output()}"
        assert "stopped" in up.output()
        return took, up.output()
    finally:
        up.kill()


@pytest.mark.slow
def test_ctrl_c_stops_everything_20_times_in_20(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) of `up`: exit 0 within the bound, nothing left.

    Two at a time; about 2 minutes on a loaded 2-core machine (~4-8 s each to start).
    TURBOHOOKS_TEST_UP_TRIES=n runs fewer.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_start_and_stop, [tmp_path / f"up-{n}" for n in range(TRIES)]))
    assert len(results) == TRIES
    assert max(took for took, _ in results) < STOP_BOUND


@pytest.mark.slow
def test_a_second_up_on_the_same_data_dir_is_refused(tmp_path: Path, ups: list[Up]) -> None:
    data_dir = tmp_path / "data"
    first = Up.start(data_dir, "--quiet")
    ups.append(first)
    first.wait_healthy()
    servers = _processes_using(data_dir)
    # As the "port taken" advice once led to: another NATS port, the same folder.
    second = cli("up", "--port", str(_free_port()), env={**first.env, "TURBOHOOKS_NATS_PORT": str(_free_port())})
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert "is taken" in lines[0] and f"pid {first.process.pid}" in lines[0] and str(data_dir) in lines[0]
    assert _processes_using(data_dir) == servers, "never a second nats-server on the same store"
    first.ctrl_c()
    assert first.process.wait(timeout=STOP_BOUND + 20) == 0


# -- one configuration; what `up` prints ---------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Receiver.received.append({"body": json.loads(body), "headers": dict(self.headers)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.mark.slow
def test_local_development_delivers_to_a_loopback_receiver_and_up_shows_failures(
    tmp_path: Path, ups: list[Up], receiver: str
) -> None:
    """The README's quick start: `up` in one terminal, the CLI in another with nothing exported, delivered."""
    up = Up.start(tmp_path / "data", "--status-every", "0.5")
    ups.append(up)
    up.wait_healthy()
    assert "local development" in up.wait_for("http:// and loopback receivers accepted")
    # The second terminal: no WEBHOOK_* exported, no NATS_URL; the same data dir (the folder it runs in).
    second = {k: v for k, v in up.env.items()}
    created = cli(
        "subscriptions", "create", "--name", "local", "--url", receiver, "--event-types", "issue.*", env=second
    )
    assert created.returncode == 0, created.stderr
    closed = f"http://127.0.0.1:{_free_port()}/hook"
    failing = cli("subscriptions", "create", "--name", "down", "--url", closed, "--event-types", "issue.*", env=second)
    assert failing.returncode == 0, failing.stderr
    published = cli("publish", "issue.created", "--entity-id", "42", "--data", '{"title": "Bug"}', env=second)
    assert published.returncode == 0, published.stderr
    deadline = time.monotonic() + 30
    while not _Receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _Receiver.received, f"not delivered:\n{up.output()}"
    assert _Receiver.received[0]["body"]["event_type"] == "issue.created"  # type: ignore[index]
    failure = up.wait_for("delivery failed: down issue.created")
    assert closed in failure and "retrying" in failure
    up.wait_for("status: 2 subscriptions running")
    up.wait_for("1 ok")

    # Production: the same CLI, the same folder, TURBOHOOKS_ENV=production: https and the address rules.
    refused = cli(
        "subscriptions", "create", "--name", "prod", "--url", receiver, "--event-types", "issue.*",
        env={**second, "TURBOHOOKS_ENV": "production"},
    )  # fmt: skip
    assert refused.returncode == 2 and "plain http" in refused.stderr, refused.stderr
    up.ctrl_c()
    assert up.process.wait(timeout=40) == 0


def test_version() -> None:
    from streams import VERSION

    result = cli("--version", env=_env(Path("unused")))
    assert result.returncode == 0 and result.stdout.strip() == f"turbohooks {VERSION}"
