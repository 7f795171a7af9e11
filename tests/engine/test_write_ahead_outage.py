"""An attempt whose record cannot be written ahead (the attempts stream away) is not sent, and no crash.

Found by the load benchmark: under an overloaded JetStream the write-ahead publish
timed out, the pull loop logged it as a crash with a full traceback (76 % of the
worker's CPU as it fell behind) and the event waited out ``ack_wait``. Now the
event is handed back at once, with one warning line, and delivered as soon as the
attempts stream answers again.
"""

from __future__ import annotations

import logging
import time

import pytest

from consumers.subscriptions._consumer import ack_wait
from streams import ATTEMPTS_STREAM, provision
from tests.support import Receiver, Running, settled, wait_for


async def test_an_attempt_not_written_ahead_is_not_sent_nor_a_crash_and_comes_back_soon(
    running: Running, receiver: Receiver, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = running.engine
    path = f"/outage-{unique}"
    sub = await running.subscribe(
        name=f"outage-{unique}", url=receiver.endpoint(path), event_types=["issue.created"], max_in_flight=1
    )
    await engine.js.delete_stream(ATTEMPTS_STREAM)  # a real NATS failure: the publish has no responder
    try:
        with caplog.at_level(logging.WARNING, logger="turbohooks"):
            ack = await engine.publisher.emit(event_type="issue.created", entity_id=unique)
            await wait_for(
                lambda: any("could not be written ahead" in r.getMessage() for r in caplog.records),
                what="the worker to meet the outage",
            )
        assert receiver.at(path) == []  # nothing sent without its record
        crashes = [r for r in caplog.records if "crashed" in r.getMessage() or r.exc_info]
        assert crashes == [], [r.getMessage() for r in crashes]
    finally:
        await provision(engine.js, engine.settings)
    restored = time.monotonic()
    await wait_for(lambda: len(receiver.at(path)) >= 1, timeout=ack_wait(engine.settings), what="the delivery")
    # Handed back with a short delay, not left to ack_wait (7 s here).
    assert time.monotonic() - restored < ack_wait(engine.settings) - 2
    assert receiver.at(path)[0].event_id == str(ack.event_id)
    await settled(running, sub.id, ack.event_id, status="success")
