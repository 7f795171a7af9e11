"""`turbohooks receive`: the local receiver of the README walkthrough checks signatures as a receiver would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from consumers import build_headers, generate_secret
from streams import EmbeddedNats

BIN = Path(sys.executable).parent / "turbohooks"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(nats_server: EmbeddedNats, tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "TURBOHOOKS_", "WEBHOOK_", "DATABASE_"))}
    return {
        **keep,
        "NATS_URL": nats_server.url,
        "TURBOHOOKS_DATA_DIR": str(tmp_path / "data"),
        "TURBOHOOKS_STREAM_MAX_BYTES": "1GiB",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "COLUMNS": "200",
    }


def _signed(secret: str, body: bytes) -> dict[str, str]:
    return build_headers(
        msg_id=str(uuid.uuid4()),
        timestamp=int(time.time()),
        body=body,
        secrets=[secret],
        event_type="issue.created",
        event_id=str(uuid.uuid4()),
        event_time=datetime.now(UTC),
        source="test",
        user_agent="turbohooks/test",
    )


def test_receive_checks_the_signature_of_the_subscription_that_sends_to_it(env: dict[str, str], tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hook"
    created = subprocess.run(
        [str(BIN), "subscriptions", "create", "--name", "local", "--url", url, "--event-types", "issue.*"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["secret"]
    log = tmp_path / "receive.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN), "receive", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while "receiving webhooks" not in log.read_text():
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            time.sleep(0.1)
        body = b'{"event_type": "issue.created"}'
        good = httpx.post(url, content=body, headers=_signed(secret, body), timeout=10)
        assert good.status_code == 200
        bad = httpx.post(url, content=body, headers=_signed(generate_secret(), body), timeout=10)
        assert bad.status_code == 200  # it shows, it does not refuse
        elsewhere = httpx.post(f"http://127.0.0.1:{port}/other", content=body, timeout=10)
        assert elsewhere.status_code == 200
    finally:
        process.send_signal(2)
        assert process.wait(timeout=20) == 0
    lines = log.read_text().splitlines()
    assert any("issue.created" in line and "signature ok (local)" in line for line in lines), lines
    assert any("signature BAD" in line for line in lines), lines
    assert any("/other" in line and "signature not checked" in line for line in lines), lines
    assert "Traceback" not in log.read_text()


def test_receive_refuses_a_taken_port_in_one_line(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(BIN), "receive", "--port", str(port), "--secret", generate_secret()],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
