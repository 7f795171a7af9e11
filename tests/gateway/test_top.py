"""`turbohooks top --once`: one frame of every subscription's health, as a user runs it."""

from __future__ import annotations

import socket

from consumers import Engine, SubscriptionCreate, SubscriptionPatch, consumer_name
from streams import Settings
from tests.support import engine_cli_env, run_cli_async, wait_for


async def test_top_once_shows_the_figures_and_nats_down_is_one_line(
    engine: Engine, settings: Settings, unique: str
) -> None:
    sub = await engine.service.create(
        SubscriptionCreate(name=f"top-{unique}", url="http://127.0.0.1:9/x", event_types=["issue.*"])
    )
    await engine.service.update(sub.id, SubscriptionPatch(active=False))
    for n in range(3):
        await engine.publisher.emit(event_type="issue.created", entity_id=f"{unique}-{n}")

    async def three_waiting() -> bool:
        return (await engine.js.consumer_info(engine.settings.stream_name, consumer_name(sub))).num_pending == 3

    await wait_for(three_waiting, what="three events waiting")
    env = engine_cli_env(settings, columns=160)
    result = await run_cli_async("top", "--once", env=env)
    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if f"top-{unique}" in line]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    # name, status, pending, oldest, in flight, ok 5m, p95 5m, retries, dead, filtered, held (5 min)
    assert (
        cells[:3] == [f"top-{unique}", "paused", "3"]
        and cells[3].endswith("s")
        and cells[4:]
        == [
            "0",
            "-",
            "-",
            "0",
            "0",
            "0",
            "0",
        ]
    ), cells
    for header in ("pending", "oldest", "in flight", "ok 5m", "p95 5m", "retries", "dead", "filtered", "held"):
        assert header in result.stdout

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = await run_cli_async("top", "--once", env={**env, "NATS_URL": f"nats://127.0.0.1:{port}"})
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1 and "NATS" in down.stderr, down.stderr
