"""No poison message: undecodable or mismatched events go to the dead letters with the reason; the loop goes on."""

from __future__ import annotations

import uuid

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from consumers import DeadLetter
from streams import DEAD_LETTER_STREAM, build_event, encode_event
from tests.support import Receiver, Running, wait_for


def envelope(
    event_type: str = "issue.created", data: bytes = b"{}", timestamp: bytes = b"2024-05-01T12:00:00Z"
) -> bytes:
    return (
        b'{"event_id":"' + str(uuid.uuid4()).encode() + b'","event_type":"' + event_type.encode() + b'",'
        b'"timestamp":"' + timestamp + b'","entity_type":"issue","entity_id":"1","action":"created",'
        b'"data":' + data + b"}"
    )


POISON: list[tuple[str, bytes, str]] = [
    # (subject, payload, what the reason names)
    ("turbo.issue.created", b"{not json", "not valid JSON"),
    ("turbo.issue.created", envelope(data=b'{"current":{},"surprise":1}'), "surprise"),
    ("turbo.issue.created", envelope(data=b'{"current":{"n":1e400}}'), "out of range"),
    ("turbo.issue.created", envelope(timestamp=b"yesterday"), "timestamp"),
    ("turbo.issue.created", envelope(data=b'{"current":{"x":' + b"[" * 2000 + b"]" * 2000 + b"}}"), "deeper"),
    ("turbo.issue.created", envelope(event_type="issue.closed"), "published on turbo.issue.created"),
    ("turbo.issue.exploded", envelope(event_type="issue.exploded"), "not in the catalog"),
    ("turbo.issue.created", b"\xff\x00\xfe", "not valid JSON"),
]


async def dead_letters(js: JetStreamContext, sub_id: uuid.UUID) -> list[DeadLetter]:
    subject = f"turbohooks.dlq.{sub_id.hex}"
    letters: list[DeadLetter] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(DEAD_LETTER_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return letters
        letters.append(msgspec.json.decode(msg.data or b"", type=DeadLetter))
        seq = (msg.seq or seq) + 1


async def test_undecodable_and_mismatched_events_are_dead_lettered_with_the_reason(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/poison-{unique}"
    sub = await running.subscribe(name=f"poison-{unique}", url=receiver.endpoint(path), event_types=["issue.*"])
    js = running.engine.js
    published = []
    for subject, payload, _ in POISON:
        ack = await js.publish(subject, payload)
        published.append(ack.seq)
    sentinel = build_event(event_type="issue.created", entity_id=unique)
    await js.publish(sentinel.subject, encode_event(sentinel))

    await wait_for(lambda: any(r.event_id == str(sentinel.event_id) for r in receiver.at(path)), what="the sentinel")
    letters: list[DeadLetter] = []

    async def all_buried() -> bool:
        letters[:] = await dead_letters(js, sub.id)
        return len(letters) >= len(POISON)

    await wait_for(all_buried, what="a dead letter per poison event")
    # Nothing but the sentinel reached the receiver: a mismatched or unknown type is not delivered.
    assert [r.event_id for r in receiver.at(path)] == [str(sentinel.event_id)]
    by_seq = {letter.stream_seq: letter for letter in letters}
    assert sorted(by_seq) == sorted(published)
    for seq, (subject, payload, reason) in zip(published, POISON, strict=True):
        letter = by_seq[seq]
        assert letter.subscription_id == sub.id
        assert letter.cause == "refused"
        assert reason in letter.reason, (reason, letter.reason)
        assert letter.subject == subject
        assert letter.raw == payload and not letter.raw_truncated
        assert letter.last_attempt is None


async def test_a_refused_message_near_the_payload_cap_is_kept_cut_to_fit(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/huge-{unique}"
    sub = await running.subscribe(name=f"huge-{unique}", url=receiver.endpoint(path), event_types=["issue.created"])
    js = running.engine.js
    cap = running.engine.nc.max_payload
    huge = b'{"not": "an event", "pad": "' + b"x" * (cap - 1024) + b'"}'
    ack = await js.publish("turbo.issue.created", huge)
    sentinel = build_event(event_type="issue.created", entity_id=unique)
    await js.publish(sentinel.subject, encode_event(sentinel))
    await wait_for(lambda: len(receiver.at(path)) == 1, what="the sentinel")
    letters: list[DeadLetter] = []

    async def buried() -> bool:
        letters[:] = await dead_letters(js, sub.id)
        return bool(letters)

    await wait_for(buried, what="the dead letter")
    (letter,) = letters
    assert letter.stream_seq == ack.seq and letter.cause == "refused" and "event_id" in letter.reason
    assert letter.raw_truncated and letter.raw and huge.startswith(letter.raw) and len(letter.raw) > cap // 2
