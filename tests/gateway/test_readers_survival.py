"""The gateway's stream readers and `turbohooks tail` survive any one bad message of the events stream.

Any NATS client can publish on ``turbo.>``: random bytes, text that is not
UTF-8, JSON nested past any parser's stack, JSON near the payload cap, wrong
shapes, a type outside the catalog or other than its subject's. They are
published raw (bypassing the publisher), then a good event; every reader must
still answer (the good event listed, the bad ones skipped or shown as
undecodable, never a 500) and `tail` must print a line per message, never a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import uuid
from typing import Any

import httpx
import pytest

from consumers import Engine
from streams import Settings, build_event, encode_event
from tests.support import BIN, Receiver, Running, engine_cli_env, wait_for

from .conftest import new_subscription


def envelope(event_type: str = "issue.created", *, event_id: str | None = None, data: bytes = b"{}") -> bytes:
    return (
        b'{"event_id":"' + (event_id or str(uuid.uuid4())).encode() + b'","event_type":"' + event_type.encode() + b'",'
        b'"timestamp":"2024-05-01T12:00:00Z","entity_type":"issue","entity_id":"1","action":"created",'
        b'"data":' + data + b"}"
    )


def bad_messages(cap: int) -> list[tuple[str, bytes]]:
    """(subject, payload) of every kind of bad message, each alone enough to break a careless reader."""
    noise = random.Random(16).randbytes(512)
    return [
        ("turbo.issue.created", noise),
        ("turbo.issue.created", b"\xff\xfe\xfd not UTF-8 at all"),
        ("turbo.issue.updated", b'{"event_id": "\xff\xfe", "event_type": "issue.updated"}'),
        ("turbo.issue.created", b"[" * 50_000 + b"]" * 50_000),
        ("turbo.issue.created", envelope(data=b'{"current":{"x":' + b"[" * 3000 + b"]" * 3000 + b"}}")),
        ("turbo.comment.created", b'{"pad": "' + b"x" * (cap - 8192) + b'"}'),
        ("turbo.issue.created", b"[]"),
        ("turbo.issue.created", b"null"),
        ("turbo.issue.created", b'"just a string"'),
        ("turbo.issue.created", b"1e400"),
        ("turbo.issue.created", b""),
        ("turbo.issue.created", b'{"event_id": 5, "data": [], "timestamp": {}}'),
        ("turbo.issue.created", envelope(data=b'{"current": [1, 2]}')),
        ("turbo.issue.created", envelope("issue.closed")),  # the body's type is not the subject's
        ("turbo.issue.exploded", envelope("issue.exploded")),  # a type outside the catalog
        (
            "turbo.issue.created",
            envelope(data=b'{"current": {"title": "[/bold] [red]markup"}}').replace(b"}", b"", 1),
        ),  # cut: markup in bad JSON
        ("turbo.nope", b"{}"),
        ("turbo.a.b.c.d.e", envelope("a.b.c.d.e")),
    ]


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return engine_cli_env(settings, columns=250, local_receivers=False)


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run, [str(BIN), *args], env=env, capture_output=True, timeout=90, check=False
    )


async def _publish_all(engine: Engine, unique: str) -> tuple[list[int], Any, uuid.UUID]:
    """The bad messages, one claiming an event id it does not carry, then a good event (with markup in it)."""
    js = engine.js
    seqs = []
    for subject, payload in bad_messages(engine.nc.max_payload):
        seqs.append((await js.publish(subject, payload)).seq)
    claimed = uuid.uuid4()
    seqs.append((await js.publish("turbo.issue.created", b"\x00garbage", headers={"Nats-Msg-Id": str(claimed)})).seq)
    good = build_event(
        event_type="issue.created", entity_id=unique, data={"current": {"title": "[/bold] [red]not markup"}}
    )
    ack = await js.publish(good.subject, encode_event(good), headers={"Nats-Msg-Id": str(good.event_id)})
    return seqs, (good, ack.seq), claimed


async def test_the_api_readers_survive_every_bad_message(
    client: httpx.AsyncClient, engine: Engine, running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/readers-{unique}"
    created = await client.post(
        "/api/subscriptions",
        json=new_subscription(receiver.url + path, f"readers-{unique}", event_types=["issue.*", "comment.*"]),
    )
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    await wait_for(lambda: uuid.UUID(sid) in running.worker.running, what="the worker to start it")
    bad, (good, good_seq), claimed = await _publish_all(engine, unique)
    await wait_for(lambda: len(receiver.at(path)) >= 1, what="the live delivery of the good event")

    newest = await client.get("/api/events", params={"limit": 100})
    assert newest.status_code == 200, newest.text
    listed = newest.json()
    assert listed["items"][0]["seq"] == good_seq and listed["items"][0]["event"]["event_id"] == str(good.event_id)
    assert not set(bad) & {item["seq"] for item in listed["items"]}  # skipped: not events of the contract
    for params in ({"entity_id": unique}, {"event_type": "issue.created", "limit": 5}, {"since": "10m", "limit": 5}):
        answer = await client.get("/api/events", params=params)
        assert answer.status_code == 200, (params, answer.text)
        assert answer.json()["items"][0]["event"]["event_id"] == str(good.event_id), params

    one = await client.get(f"/api/events/{good.event_id}")
    assert one.status_code == 200 and one.json()["seq"] == good_seq
    assert one.json()["event"]["data"]["current"]["title"] == "[/bold] [red]not markup"
    liar = await client.get(f"/api/events/{claimed}")  # a message claims the id but is no event
    assert liar.status_code == 404, liar.text

    replay = f"/api/subscriptions/{sid}/replay"
    dry = await client.post(replay, json={"from_seq": bad[0], "to_seq": good_seq, "dry_run": True})
    assert dry.status_code == 200, dry.text
    items = {item["seq"]: item for item in dry.json()["events"]}
    assert items[good_seq]["event_id"] == str(good.event_id)
    assert all(items[seq]["event_id"] is None for seq in bad if seq in items)  # listed as undecodable
    assert len(items) >= len(bad) - 3  # every bad message on an issue.* or comment.* subject is listed
    # The preview says how many would really be sent: the matched ones less the skipped non-events.
    assert dry.json()["skipped"] == sum(1 for item in items.values() if item["event_id"] is None) >= 1
    assert dry.json()["matched"] - dry.json()["skipped"] == 1

    # A real replay queues the good event only: not the body typed issue.closed, nor the type outside the catalog.
    queued = await client.post(replay, json={"from_seq": bad[0], "to_seq": good_seq})
    assert queued.status_code == 200, queued.text
    assert queued.json()["queued"] == 1
    await wait_for(lambda: len(receiver.at(path)) == 2, what="the replayed event")
    await asyncio.sleep(1.0)
    assert [json.loads(r.body)["event_id"] for r in receiver.at(path)] == [str(good.event_id)] * 2

    stats = await client.get("/api/stats")
    assert stats.status_code == 200, stats.text
    letters = await client.get("/api/dead-letters", params={"subscription_id": sid, "limit": 100})
    assert letters.status_code == 200, letters.text


async def test_tail_prints_a_line_per_message_and_never_a_traceback(
    env: dict[str, str], engine: Engine, unique: str
) -> None:
    bad, (good, good_seq), _ = await _publish_all(engine, unique)
    first = str(bad[0])
    as_json, as_text = await asyncio.gather(
        _cli("tail", "--from-seq", first, "--no-follow", "--json", env=env),
        _cli("tail", "--from-seq", first, "--no-follow", env=env),
    )
    assert as_json.returncode == 0, as_json.stderr.decode(errors="replace")
    assert b"Traceback" not in as_json.stderr
    lines = as_json.stdout.decode("utf-8").splitlines()
    assert len(lines) == len(bad) + 1, lines[:3]
    documents = [json.loads(line) for line in lines]  # each line one JSON document
    assert documents[-1]["event_id"] == str(good.event_id)
    for seq, document in zip(bad, documents, strict=False):
        assert document["seq"] == seq and document["undecodable"], document.get("undecodable")

    assert as_text.returncode == 0, as_text.stderr.decode(errors="replace")
    assert b"Traceback" not in as_text.stderr
    text = as_text.stdout.decode("utf-8").splitlines()
    assert len(text) == len(bad) + 1
    for seq, line in zip(bad, text, strict=False):
        assert line.split()[0] == str(seq) and "undecodable" in line, line[:200]
    assert text[-1].split()[0] == str(good_seq)
    assert unique in text[-1] and "[/bold] [red]not markup" in text[-1]
