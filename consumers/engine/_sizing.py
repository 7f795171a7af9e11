"""Records and batches that fit the server's ``max_payload``.

A JetStream message larger than the server's ``max_payload`` is refused, and
an attempt record carries the request body (base64 inside the JSON: 4/3 of
it), so an event near the cap made a record, and the batch it shared, that
could never be stored: its events were never acknowledged, never logged,
POSTed again every ``ack_wait``. Batches are therefore cut by their encoded
size, and a record that alone would not fit gives up its largest parts, in
this order:

1. the request body is stored **by reference**: a JSON document
   ``{"turbohooks_omitted": "request body", "bytes": N, "sha256": "…",
   "stream_seq": S, "head": "<first 512 bytes>"}``. For the custom webhook
   the body is the event envelope itself, kept in the events stream at ``S``
   (while the stream retains it; the dead letter keeps it longer);
2. the response body is truncated, ending with ``…[truncated by turbohooks]``;
3. the request and response headers are replaced by one
   ``turbohooks-omitted`` entry saying how many bytes they were.

A dead letter holds the event and its last attempt: the attempt gives up its
body first (it is the event, or derived from it); an event that alone would
not fit leaves a reference to its stream sequence instead of its bytes.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from .._messages import AttemptRecord

__all__ = ("HEADROOM", "TRUNCATED", "fit_record", "omitted")

HEADROOM: Final = 2048
"""Bytes kept under ``max_payload`` for the message's headers and the batch's own fields."""
TRUNCATED: Final = "…[truncated by turbohooks]"

_encoder: Final = msgspec.json.Encoder()
_HEAD: Final = 512


def omitted(what: str, body: bytes, **where: object) -> bytes:
    """The JSON document stored instead of ``body``: what it was, its size and digest, where to find it."""
    document: dict[str, object] = {
        "turbohooks_omitted": what,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        **where,
        "head": body[:_HEAD].decode("utf-8", "replace"),
    }
    return _encoder.encode(document)


def fit_record(record: AttemptRecord, limit: int) -> tuple[AttemptRecord, bytes]:
    """``record`` (or a smaller copy of it) and its encoding, at most ``limit`` bytes when at all possible."""
    encoded = _encoder.encode(record)
    if len(encoded) <= limit:
        return record, encoded
    if record.payload and not record.payload.startswith(b'{"turbohooks_omitted"'):
        marker = omitted("request body", record.payload, stream_seq=record.stream_seq)
        record = msgspec.structs.replace(record, payload=marker)
        encoded = _encoder.encode(record)
        if len(encoded) <= limit:
            return record, encoded
    body = record.response_body or ""
    while body and len(encoded) > limit:
        # Escapes and UTF-8 make characters up to 6 bytes: cut by the overshoot, at least half.
        body = body[: min(len(body) // 2, len(body) - (len(encoded) - limit))]
        record = msgspec.structs.replace(record, response_body=body + TRUNCATED)
        encoded = _encoder.encode(record)
    if len(encoded) <= limit:
        return record, encoded
    headers = len(_encoder.encode(record.request_headers)) + len(_encoder.encode(record.response_headers))
    note = {"turbohooks-omitted": f"{headers} bytes of headers"}
    record = msgspec.structs.replace(
        record,
        request_headers=note,
        response_headers=note,
        error=None if record.error is None else record.error[:1000],
        request_url=record.request_url[:2000],
    )
    return record, _encoder.encode(record)
