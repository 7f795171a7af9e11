"""The rows a batch of attempts becomes: the values of new deliveries and attempts, the delivery's state
after its attempts, the failure counters of subscriptions (pure functions, and the chunked reads
:class:`~consumers.log._recording.DeliveryRecording` uses).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec
from sqlalchemy import JSON, Row, Select
from sqlalchemy.ext.asyncio import AsyncConnection

from .._messages import AttemptRecord, DeliveryStatus
from ._views import now, utc

__all__ = (
    "Counters",
    "add_update",
    "apply_attempts",
    "attempt_values",
    "count_failures",
    "new_delivery_values",
    "over_threshold",
    "select_in",
)

_T = TypeVar("_T")

# Ids per "IN (...)" list: far below the bind-parameter limits of SQLite (32766)
# and PostgreSQL (32767), whatever size of batch the recorder hands over.
_IN_CHUNK: Final = 1000


_STATUS_AFTER: Final[dict[str, DeliveryStatus]] = {"success": "success", "retrying": "pending", "failed": "failed"}
"""A delivery's status when its latest attempt had this outcome."""


class Counters:
    """The failure counters of a subscription, as read and as updated by a batch."""

    __slots__ = ("_read", "consecutive_failures", "first_failure_at", "id", "status")

    def __init__(
        self, subscription_id: uuid.UUID, status: str, consecutive_failures: int, first_failure_at: datetime | None
    ) -> None:
        self.id = subscription_id
        self.status = status
        self.consecutive_failures = consecutive_failures
        self.first_failure_at = first_failure_at
        self._read = (consecutive_failures, first_failure_at)

    def changed(self) -> bool:
        return (self.consecutive_failures, self.first_failure_at) != self._read


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def select_in(
    connection: AsyncConnection, query: Select[Any], ids: set[uuid.UUID] | dict[uuid.UUID, Any]
) -> list[Row[Any]]:
    """Rows of ``query`` for the ``ids``, in id order, in chunks of :data:`_IN_CHUNK`."""
    rows: list[Row[Any]] = []
    for chunk in _chunks(sorted(ids), _IN_CHUNK):
        rows.extend(await connection.execute(query, {"ids": chunk}))
    return rows


def _clean_text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a receiver's answer may contain one.
    return None if value is None else value.replace("\x00", "\ufffd")


def _payload_json(body: bytes) -> Any:
    """The JSON document stored for a request body; a body that is not JSON is kept as a string.

    A JSON body is stored as it came (``msgspec.Raw``: the column's serializer copies it),
    once checked to be one JSON value in UTF-8: decoding the ~1 KiB envelope into Python
    objects and encoding it again was several percent of the recorder's CPU.
    """
    if not body:
        return None
    # JSONB refuses the NUL character, even escaped.
    body = body.replace(b"\\u0000", b"\\ufffd")
    try:
        document = msgspec.json.decode(body, type=msgspec.Raw)  # checks the syntax, builds nothing
        bytes(document).decode("utf-8")  # and the encoding, which decoding to Raw does not check
    except (msgspec.DecodeError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").replace("\x00", "\ufffd")
    return document


def new_delivery_values(delivery_id: uuid.UUID, records: list[AttemptRecord]) -> dict[str, Any]:
    """The row of a delivery seen for the first time, before its attempts are applied."""
    first = min(records, key=lambda r: utc(r.started_at))
    return {
        "id": delivery_id,
        "subscription_id": first.subscription_id,
        "event_id": first.event_id,
        "event_type": first.event_type,
        "payload": JSON.NULL,  # until an attempt carries a body
        "status": "pending",
        "response_code": None,
        "response_body": None,
        "error_message": None,
        "attempts": 0,
        "created_at": utc(first.started_at),
        "delivered_at": None,
        "last_attempt_at": None,
        "next_attempt_at": None,
        "latency_ms": None,
        "trigger": first.trigger,
        "stream_seq": first.stream_seq,
    }


def attempt_values(record: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt_id": record.attempt_id,
        "delivery_id": record.delivery_id,
        "attempt": record.attempt,
        "outcome": record.outcome,
        "trigger": record.trigger,
        "request_url": record.request_url,
        "request_headers": record.request_headers,
        "response_code": record.response_code,
        "response_headers": record.response_headers,
        "response_body": _clean_text(record.response_body),
        "error": _clean_text(record.error),
        "latency_ms": record.latency_ms,
        "started_at": utc(record.started_at),
        "finished_at": utc(record.finished_at),
        "next_attempt_at": None if record.next_attempt_at is None else utc(record.next_attempt_at),
    }


def _finish_order(record: AttemptRecord) -> tuple[datetime, int]:
    return utc(record.finished_at), record.attempt


def apply_attempts(
    row: dict[str, Any], new: list[AttemptRecord], completed: set[uuid.UUID]
) -> tuple[datetime, uuid.UUID, DeliveryStatus] | None:
    """Fold newly stored attempts into their delivery's values; the transition to success or failed, if any.

    ``row`` holds at least what :data:`_LOCK_DELIVERIES` reads; the columns it
    gains here are the ones to write besides those. An attempt written ahead
    (``pending``) counts, and changes nothing else (the request is out, its
    answer unknown); the answer of one already counted (in ``completed``)
    applies its outcome without counting again.
    """
    before = row["status"] if row["attempts"] else None  # None: the row is created by this batch
    carrier: AttemptRecord | None = None  # the latest attempt with a body
    for record in sorted(new, key=_finish_order) if len(new) > 1 else new:
        finished = utc(record.finished_at)
        if record.attempt_id not in completed:
            row["attempts"] += 1
        if record.outcome == "pending":
            continue
        if record.outcome == "success" and (row["delivered_at"] is None or finished < row["delivered_at"]):
            row["delivered_at"] = finished
        if row["last_attempt_at"] is not None and finished < row["last_attempt_at"]:
            continue  # an older attempt arriving late: counted, but not the latest answer
        row["last_attempt_at"] = finished
        row["status"] = _STATUS_AFTER[record.outcome]
        row["trigger"] = record.trigger
        row["response_code"] = record.response_code
        row["response_body"] = _clean_text(record.response_body)
        row["error_message"] = _clean_text(record.error)
        row["latency_ms"] = record.latency_ms
        row["next_attempt_at"] = None if record.next_attempt_at is None else utc(record.next_attempt_at)
        if record.stream_seq is not None:
            row["stream_seq"] = record.stream_seq
        if record.payload:
            carrier = record
    if carrier is not None:
        row["payload"] = _payload_json(carrier.payload)
    if row["delivered_at"] is not None:
        row["status"] = "success"  # sticky: a later failure of a replay does not undo a delivery
        row["next_attempt_at"] = None
    status: DeliveryStatus = row["status"]
    if status == before or status == "pending":
        return None
    when: datetime | None = row["delivered_at"] if status == "success" else row["last_attempt_at"]
    assert when is not None
    return when, row["subscription_id"], status


def add_update(
    updates: dict[frozenset[str], list[dict[str, Any]]], delivery_id: uuid.UUID, row: dict[str, Any]
) -> None:
    """Queue the UPDATE of a delivery to ``row``, with the others that set the same columns."""
    params = {key: value for key, value in row.items() if key != "id" and key != "subscription_id"}
    updates[frozenset(params)].append(params)
    params["b_id"] = delivery_id


def count_failures(
    subscriptions: dict[uuid.UUID, Counters], transitions: list[tuple[datetime, uuid.UUID, DeliveryStatus]]
) -> set[uuid.UUID]:
    """Apply the transitions in time order to the failure counters; the subscriptions that failed more."""
    failed_more: set[uuid.UUID] = set()
    for when, subscription_id, status in sorted(transitions, key=lambda t: t[0]):
        subscription = subscriptions[subscription_id]
        if status == "success":
            subscription.consecutive_failures = 0
            subscription.first_failure_at = None
            failed_more.discard(subscription_id)
        else:
            if subscription.consecutive_failures == 0 or subscription.first_failure_at is None:
                subscription.first_failure_at = when
            subscription.consecutive_failures += 1
            failed_more.add(subscription_id)
    return failed_more


def over_threshold(
    subscriptions: list[Counters], disable_after_failures: int, disable_after_period: float
) -> list[tuple[uuid.UUID, str]]:
    if disable_after_failures <= 0:
        return []
    moment = now()
    over: list[tuple[uuid.UUID, str]] = []
    for subscription in subscriptions:
        first = subscription.first_failure_at
        if (
            subscription.status != "disabled"
            and subscription.consecutive_failures >= disable_after_failures
            and first is not None
            and (moment - first).total_seconds() >= disable_after_period
        ):
            reason = (
                f"{subscription.consecutive_failures} consecutive deliveries failed"
                f" since {first.isoformat(timespec='seconds')}"
            )
            over.append((subscription.id, reason))
    return over
