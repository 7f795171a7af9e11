"""What `up` prints: failure lines rate-limited per subscription, the Makefile passing the port."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from gateway.cli._monitor import FailureLog

ROOT = Path(__file__).resolve().parents[2]


def test_a_storm_of_failures_is_a_few_lines_and_a_count() -> None:
    now = [0.0]
    shown: list[str] = []
    log = FailureLog(emit=shown.append, limit=3, window=10.0, clock=lambda: now[0])
    storm, calm = uuid.uuid4(), uuid.uuid4()
    for n in range(50):
        log.failure(storm, "storm", f"delivery failed: storm #{n}")
    log.failure(calm, "calm", "delivery failed: calm #0")
    assert shown == [*(f"delivery failed: storm #{n}" for n in range(3)), "delivery failed: calm #0"]
    now[0] = 10.5
    log.flush(lambda sid: "storm" if sid == storm else "calm")
    assert shown[-1] == "… and 47 more failed deliveries of storm in 10s"
    log.failure(storm, "storm", "delivery failed: storm #50")  # a new window shows again
    assert shown[-1] == "delivery failed: storm #50"


def test_make_up_takes_the_port_and_arguments() -> None:
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "up", "PORT=8001", "ARGS=--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert dry.stdout.strip().splitlines()[-1].endswith("turbohooks up --port 8001 --quiet")
