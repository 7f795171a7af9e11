"""The worker reads a message's delivery count and stream sequence from its reply subject."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from consumers.engine._loop import position as _position

V1 = "$JS.ACK.TURBO_EVENTS.webhook_0af3.3.1234.77.1700000000000000000.5"
V2 = "$JS.ACK.hub.ACCHASH.TURBO_EVENTS.webhook_0af3.4.99.12.1700000000000000000.0.x1y2"


@pytest.mark.parametrize("reply", [V1, V2], ids=["v1", "v2 (domain and account)"])
def test_position_matches_nats_py_metadata(reply: str) -> None:
    msg = Msg(None, subject="turbo.issue.created", reply=reply)  # type: ignore[arg-type]
    meta = Msg(None, subject="turbo.issue.created", reply=reply).metadata  # type: ignore[arg-type]
    assert _position(msg) == (meta.num_delivered, meta.sequence.stream)


def test_position_of_v1_subject() -> None:
    assert _position(Msg(None, subject="s", reply=V1)) == (3, 1234)  # type: ignore[arg-type]
