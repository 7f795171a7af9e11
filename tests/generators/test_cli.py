"""`turbohooks simulate` and `turbohooks scheduler`, as a user runs them (subprocesses, the real server)."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.js import JetStreamContext

from publishers import EventPublisher
from publishers._changes import emit_change
from streams import EmbeddedNats, Settings
from tests.support import cli_env

from .conftest import eventually, stored_events

BIN = Path(sys.executable).parent / "turbohooks"


def _env(nats_server: EmbeddedNats, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        NATS_URL=nats_server.url,
        TURBOHOOKS_DATA_DIR=str(tmp_path / "cli-data"),
        TURBOHOOKS_STREAM_MAX_BYTES="1GiB",
        COLUMNS="200",
    )


async def test_simulate_runs_end_to_end(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, start_seq: int, tmp_path: Path
) -> None:
    seed = random.randrange(10**6, 10**7)
    process = await asyncio.create_subprocess_exec(
        str(BIN),
        *("simulate", "--duration", "2", "--rate", "50", "--seed", str(seed)),
        env=_env(nats_server, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    stdout = out.decode()
    assert f"seed {seed}" in stdout
    published = int(stdout.rsplit("published ", 1)[1].split()[0])
    assert 20 <= published <= 50 * 2 + 10, "paced at about 50 events a second for 2 seconds"
    stored = [e for e in await stored_events(js, settings, start_seq) if e.entity_id.startswith(f"sim{seed}-")]
    assert len(stored) == published
    assert {"project.created", "issue.created"} <= {e.event_type for e in stored}


async def test_scheduler_command_publishes_due_and_completion_events(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    settings: Settings,
    publisher: EventPublisher,
    start_seq: int,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    late, milestone, last = f"late-{tag}", f"m-{tag}", f"i-{tag}"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    process = await asyncio.create_subprocess_exec(
        str(BIN),
        "scheduler",
        env=_env(nats_server, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await emit_change(publisher, "issue", late, previous=None, current={"status": "open", "due_date": yesterday})
        await emit_change(
            publisher, "issue", last, previous=None, current={"status": "open", "milestone_id": milestone}
        )
        await emit_change(publisher, "issue", last, previous={"status": "open"}, current={"status": "closed"})

        async def produced() -> set[tuple[str, str]] | None:
            events = await stored_events(js, settings, start_seq, entity_ids={late, milestone})
            found = {(e.entity_id, e.event_type) for e in events}
            wanted = {(late, "issue.overdue"), (milestone, "milestone.completed")}
            return found if wanted <= found else None

        await eventually(produced, timeout=20)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()
    assert "stopped" in out.decode()
