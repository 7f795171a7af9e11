"""Attempt records and batches never exceed the server's max_payload."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from consumers import AttemptBatch, AttemptBatcher, AttemptRecord
from consumers.engine._sizing import TRUNCATED, fit_record


def _record(payload: bytes = b"", response_body: str | None = None, **fields: Any) -> AttemptRecord:
    moment = datetime.now(UTC)
    return AttemptRecord(
        attempt_id=uuid.uuid4(),
        delivery_id=uuid.uuid4(),
        subscription_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        event_type="issue.created",
        attempt=1,
        outcome="success",
        stream_seq=42,
        payload=payload,
        response_body=response_body,
        started_at=moment,
        finished_at=moment,
        **fields,
    )


def test_a_record_too_large_keeps_its_body_by_reference_and_truncates_the_answer() -> None:
    body = b'{"data": "' + b"x" * 2_000_000 + b'"}'
    record, encoded = fit_record(_record(body, "é" * 500_000), 64 * 1024)
    assert len(encoded) <= 64 * 1024
    marker = msgspec.json.decode(record.payload)
    assert marker["turbohooks_omitted"] == "request body"
    assert marker["bytes"] == len(body) and marker["stream_seq"] == 42 and len(marker["sha256"]) == 64
    assert record.response_body is not None and record.response_body.endswith(TRUNCATED)
    assert msgspec.json.decode(encoded, type=AttemptRecord) == record


def test_a_small_record_is_kept_as_it_is() -> None:
    original = _record(b'{"a": 1}', "ok")
    record, encoded = fit_record(original, 64 * 1024)
    assert record is original and encoded == msgspec.json.encode(original)


def test_huge_headers_give_way_last() -> None:
    headers = {f"x-h{i}": "v" * 1000 for i in range(200)}
    record, encoded = fit_record(_record(response_headers=headers), 16 * 1024)
    assert len(encoded) <= 16 * 1024
    assert list(record.response_headers) == ["turbohooks-omitted"]


class _FakeJetStream:
    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.published.append(payload)


async def test_batches_are_cut_by_encoded_size_under_max_payload() -> None:
    js = _FakeJetStream()
    batcher = AttemptBatcher(js, max_payload=lambda: 64 * 1024)  # type: ignore[arg-type]
    records = [_record(b'"' + b"y" * 20_000 + b'"') for _ in range(10)] + [_record(b"z" * 200_000)]
    await asyncio.gather(*(batcher.record(r) for r in records))
    await batcher.close()
    assert len(js.published) > 1
    assert all(len(p) <= 64 * 1024 - 2048 for p in js.published)
    stored = [r for p in js.published for r in msgspec.json.decode(p, type=AttemptBatch).records]
    assert [r.attempt_id for r in stored] == [r.attempt_id for r in records]
