"""The shape and subject of a redelivery request: one more attempt of a stored event (manual retry, replay)."""

from __future__ import annotations

import uuid
from typing import Final

import msgspec

from streams import REDELIVER_SUBJECT_ROOT

from .._messages import AttemptTrigger

__all__ = ("RedeliveryRequest", "redeliver_subject", "request_decoder")


class RedeliveryRequest(msgspec.Struct, kw_only=True):
    """Deliver one stored event to one subscription once more (manual retry, replay)."""

    subscription_id: uuid.UUID
    trigger: AttemptTrigger
    event: msgspec.Raw
    stream_seq: int | None = None


request_decoder: Final = msgspec.json.Decoder(RedeliveryRequest)


def redeliver_subject(integration: str, subscription_id: uuid.UUID) -> str:
    """Where a manual retry or replay of one subscription is queued for its workers."""
    return f"{REDELIVER_SUBJECT_ROOT}.{integration}.{subscription_id.hex}"
