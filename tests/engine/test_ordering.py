"""Ordered delivery: ``strict`` under a retry, ``entity`` across interleaved keys, and across a kill -9.

What is asserted, per ordering key (the whole subscription for ``strict``): the
stream positions a receiver sees never go back. A retry repeats the event in
hand before anything later of its key; after a crash the event that was in
flight may come again (at-least-once: its acknowledgement died with the
worker), but never an event older than one already received. Different keys
overlap in time; one key never has two requests open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import msgspec
import pytest
from aiohttp import web

from consumers import Engine, SubscriptionCreate, SubscriptionPatch, open_engine
from consumers.engine import EntityLoop, KeyedTurns, Lease, key_of, lease_name, lease_ttl
from consumers.subscriptions import consumer_name
from streams import EventValidationError, Settings, build_event
from tests.support import BIN, Received, Receiver, engine_cli_env, running_engine, serve_receiver, wait_for


@dataclass
class _Answered:
    key: str
    n: int
    start: float
    end: float


@dataclass
class _KeyedReceiver(Receiver):
    """Answers 500 once to the events in ``fail_once``; records when each request of ``(key, n)`` was open."""

    fail_once: set[str] = field(default_factory=set)
    spans: list[_Answered] = field(default_factory=list)
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        start = time.monotonic()
        self.received.append(Received(request.path, dict(request.headers), body, start))
        event = msgspec.json.decode(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        current = event["data"]["current"]
        self.spans.append(_Answered(str(current["k"]), int(current["n"]), start, time.monotonic()))
        if event["event_id"] in self.fail_once:
            self.fail_once.discard(event["event_id"])
            return web.Response(status=500, text="once")
        return web.Response(status=200, text="ok")


def _per_key(spans: list[_Answered]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    for span in spans:
        seen[span.key].append(span.n)
    return seen


def _never_back(ns: list[int]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(ns))


def _most_open_at_once(spans: list[_Answered]) -> int:
    edges = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_the_key_is_read_at_its_dotted_path() -> None:
    event = build_event(
        event_type="issue.updated",
        entity_id="issue-1",
        data={"current": {"k": "a", "n": 3, "nested": {"x": [1, 2]}}},
        context={"project_id": "p-9"},
    )
    assert key_of(event, ("entity_id",)) == "issue-1"
    assert key_of(event, ("context", "project_id")) == "p-9"
    assert key_of(event, ("data", "current", "k")) == "a"
    assert key_of(event, ("data", "current", "n")) == "3"
    assert key_of(event, ("data", "current", "nested")) == '{"x":[1,2]}'
    assert key_of(event, ("data", "current", "missing")) is None
    assert key_of(event, ("data", "current", "k", "deeper")) is None
    assert key_of(event, ("nope",)) is None


async def test_turns_go_one_at_a_time_per_key_in_stream_order() -> None:
    turns = KeyedTurns()
    started: list[tuple[str, int]] = []
    release: dict[int, asyncio.Event] = {seq: asyncio.Event() for seq in (1, 2, 3, 4)}

    async def one(key: str, seq: int) -> None:
        assert await turns.turn(key, seq)
        started.append((key, seq))
        await release[seq].wait()
        turns.done(key, seq)

    # Arrival order 3, 1, 2 for key "a" (3 first, as after a takeover); 4 is another key.
    tasks = [asyncio.create_task(one(k, s)) for k, s in (("a", 3), ("a", 1), ("a", 2), ("b", 4))]
    await asyncio.sleep(0.01)
    # 3 came first and nothing else of "a" was in hand: it runs (sorting what comes back after a
    # takeover is the gate's job, below). One per key at once; 1 and 2 then go in stream order.
    assert {s for _, s in started} == {3, 4}
    release[3].set()
    release[4].set()
    await asyncio.sleep(0.01)
    assert started[2:] == [("a", 1)]
    release[1].set()
    await asyncio.sleep(0.01)
    assert started[3:] == [("a", 2)]
    release[2].set()
    await asyncio.gather(*tasks)


async def test_a_takeover_gate_sorts_what_comes_back_before_any_turn() -> None:
    turns = KeyedTurns(expected=3, gather=5.0)
    started: list[int] = []

    class _Msg:
        pass

    async def one(seq: int, delivered: int) -> None:
        assert turns.hold(_Msg(), seq, delivered) is not None  # type: ignore[arg-type]
        assert await turns.turn("k", seq)
        started.append(seq)
        turns.done("k", seq)

    first = [asyncio.create_task(one(s, 2)) for s in (7, 5)]  # redelivered in ack-wait order, not stream order
    await asyncio.sleep(0.01)
    assert started == [] and turns.gathering
    last = asyncio.create_task(one(6, 2))
    await asyncio.gather(*first, last)
    assert started == [5, 6, 7]


async def test_strict_order_holds_under_a_retry(engine: Engine, receiver: Receiver, unique: str) -> None:
    """The defect: with max_in_flight 1 an event answered 500 once arrived after the five behind it."""
    path = f"/strict-{unique}"
    async with running_engine(engine, copies=2) as run:
        await run.subscribe(
            name=f"strict-{unique}",
            url=receiver.endpoint(path, statuses=[500, 200]),
            event_types=["issue.updated"],
            ordering="strict",
            max_in_flight=1,
            retry_schedule=[0.3, 0.3],
        )
        events = [
            build_event(event_type="issue.updated", entity_id=unique, data={"current": {"n": n}}) for n in range(6)
        ]
        await engine.publisher.emit_many(events)
        await wait_for(lambda: len(receiver.at(path)) >= 7, timeout=15, what="six events and one retry")
        await asyncio.sleep(0.5)  # a late copy would be a second retry or a duplicate: none comes
    order = [int(r.event["data"]["current"]["n"]) for r in receiver.at(path)]  # type: ignore[index,call-overload]
    assert order == [0, 0, 1, 2, 3, 4, 5]


async def test_entity_order_per_key_with_interleaved_keys_and_retries(engine: Engine, unique: str) -> None:
    keys, per_key = 8, 10
    rng = random.Random(12)
    # Interleave the keys at random while each key's own events keep their order.
    lanes = {k: [(k, n) for n in range(per_key)] for k in range(keys)}
    order: list[tuple[int, int]] = []
    while lanes:
        k = rng.choice(sorted(lanes))
        order.append(lanes[k].pop(0))
        if not lanes[k]:
            del lanes[k]
    events = [
        build_event(event_type="issue.updated", entity_id=unique, data={"current": {"k": f"key{k}", "n": n}})
        for k, n in order
    ]
    retried = {(k, 2) for k in range(4)} | {(5, 7)}
    receiver = _KeyedReceiver(delay=0.05)
    receiver.fail_once = {str(e.event_id) for e, kn in zip(events, order, strict=True) if kn in retried}
    path = f"/entity-{unique}"
    async with serve_receiver(receiver), running_engine(engine, copies=2) as run:
        await run.subscribe(
            name=f"entity-{unique}",
            url=receiver.endpoint(path),
            event_types=["issue.updated"],
            ordering="entity",
            ordering_key="data.current.k",  # every event has the same entity_id: the path decides
            retry_schedule=[0.3, 0.3],
        )
        await engine.publisher.emit_many(events)
        total = keys * per_key + len(retried)
        await wait_for(lambda: len(receiver.spans) >= total, timeout=20, what="every event and its retries")
        await asyncio.sleep(0.3)
        attempts = sorted(w.deliverer.attempts for w in run.workers)
    per = _per_key(receiver.spans)
    assert set(per) == {f"key{k}" for k in range(keys)}
    for k in range(keys):
        ns = per[f"key{k}"]
        assert _never_back(ns), (k, ns)
        assert sorted(set(ns)) == list(range(per_key)), (k, ns)
        assert len(ns) == per_key + sum(1 for kk, _ in retried if kk == k), (k, ns)
    by_key: dict[str, list[_Answered]] = defaultdict(list)
    for span in receiver.spans:
        by_key[span.key].append(span)
    for spans in by_key.values():  # one request of a key open at a time
        assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    assert _most_open_at_once(receiver.spans) >= 4, "different keys are delivered at the same time"
    first, again = [s for s in receiver.spans if (s.key, s.n) == ("key0", 2)]
    between = [s for s in receiver.spans if first.end <= s.start < again.start and s.key != "key0"]
    assert between, "other keys went on while key0 waited for its retry"
    assert attempts[0] == 0 and attempts[1] == total, "one worker copy (the lease's holder) delivers it"


def _worker_env(engine: Engine) -> dict[str, str]:
    return engine_cli_env(engine.settings, WEBHOOK_TIMEOUT="2", WEBHOOK_RETRY_DELAY="0.3")


async def _start_worker(engine: Engine) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(BIN),
        "worker",
        "--integration",
        "webhook",
        env=_worker_env(engine),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_entity_order_survives_a_kill_9_of_the_delivering_worker(engine: Engine, unique: str) -> None:
    keys, per_key = 8, 25
    receiver = _KeyedReceiver(delay=0.03)
    path = f"/entity-kill-{unique}"
    workers: list[asyncio.subprocess.Process] = []
    async with serve_receiver(receiver):
        sub = await engine.service.create(
            SubscriptionCreate(
                name=f"entity-kill-{unique}",
                url=receiver.endpoint(path),
                event_types=["issue.updated"],
                ordering="entity",
                ordering_key="data.current.k",
                retry_schedule=[0.3, 0.3],
            )
        )
        lease = await Lease.open(engine.js, engine.settings, lease_name(sub))
        try:
            workers = [await _start_worker(engine), await _start_worker(engine)]
            pids = {w.pid for w in workers}
            holder = await _holder(lease, pids)
            events = [
                build_event(event_type="issue.updated", entity_id=unique, data={"current": {"k": f"key{k}", "n": n}})
                for n in range(per_key)
                for k in range(keys)
            ]
            receiver.fail_once = {str(events[i].event_id) for i in (3, 77, 150)}
            await engine.publisher.emit_many(events)
            await wait_for(lambda: len(receiver.spans) >= 40, timeout=20, what="the stream to be under way")
            killed = next(w for w in workers if w.pid == holder)
            killed.kill()  # SIGKILL: its in-hand events stay unacknowledged
            await killed.wait()
            killed_at, at_kill = time.monotonic(), len(receiver.spans)
            assert at_kill < keys * per_key, "the kill came before the end"
            wanted = {(f"key{k}", n) for k in range(keys) for n in range(per_key)}
            await wait_for(
                lambda: wanted <= {(s.key, s.n) for s in receiver.spans}, timeout=40, what="every event after the kill"
            )
            successor = await _holder(lease, pids - {holder})
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()
            with contextlib.suppress(Exception):
                await lease.kv.delete(lease.name)
    per = _per_key(receiver.spans)
    for k in range(keys):
        ns = per[f"key{k}"]
        assert _never_back(ns), (k, ns)
        assert sorted(set(ns)) == list(range(per_key)), (k, ns)
    duplicates = len(receiver.spans) - keys * per_key - 3
    assert successor != holder
    resumed = min(s.start for s in receiver.spans if s.start > killed_at) - killed_at
    worker_ttl = lease_ttl(msgspec.structs.replace(engine.settings, webhook_timeout=2.0))
    assert resumed <= worker_ttl + 3, "the standby takes over once the lease expires"
    print(
        f"\n  entity order, kill -9 of the holder: {keys * per_key} events over {keys} keys, {at_kill} received "
        f"before the kill, the standby sending {resumed:.1f}s after it (the workers' lease TTL: {worker_ttl}s), "
        f"all delivered, per-key order kept, {duplicates} duplicates (at-least-once)"
    )


@pytest.mark.slow
async def test_strict_order_survives_a_kill_9_and_a_restart(engine: Engine, unique: str) -> None:
    count = 60
    receiver = _KeyedReceiver(delay=0.02)
    path = f"/strict-kill-{unique}"
    workers: list[asyncio.subprocess.Process] = []
    async with serve_receiver(receiver):
        await engine.service.create(
            SubscriptionCreate(
                name=f"strict-kill-{unique}",
                url=receiver.endpoint(path),
                event_types=["issue.updated"],
                ordering="strict",
                retry_schedule=[0.3, 0.3],
            )
        )
        try:
            workers.append(await _start_worker(engine))
            events = [
                build_event(event_type="issue.updated", entity_id=unique, data={"current": {"k": "all", "n": n}})
                for n in range(count)
            ]
            receiver.fail_once = {str(events[i].event_id) for i in (5, 40)}
            await engine.publisher.emit_many(events)
            await wait_for(lambda: len(receiver.spans) >= 15, timeout=20, what="the stream to be under way")
            workers[0].kill()
            await workers[0].wait()
            at_kill = len(receiver.spans)
            workers.append(await _start_worker(engine))
            await wait_for(
                lambda: {s.n for s in receiver.spans} >= set(range(count)), timeout=30, what="every event after it"
            )
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()
    ns = [s.n for s in receiver.spans]
    assert at_kill < count + 2, "the kill came before the end"
    assert _never_back(ns), ns
    assert sorted(set(ns)) == list(range(count))


async def _holder(lease: Lease, among: set[int | None]) -> int:
    """The pid of the worker holding ``lease``, once one of ``among`` holds it."""
    found: list[int] = []

    async def held() -> bool:
        current = await lease.holder()
        if current is not None and current.pid in among:
            found[:] = [current.pid]
            return True
        return False

    await wait_for(held, timeout=30, what="a worker to hold the ordered subscription's lease")
    return found[0]


async def test_a_lease_has_one_holder_and_expires_without_renewal(engine: Engine, unique: str) -> None:
    first = await Lease.open(engine.js, engine.settings, f"test.{unique}")
    second = await Lease.open(engine.js, engine.settings, f"test.{unique}")
    first.ttl = second.ttl = 2  # valid for 1 s after each write (the fence margin)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.renew() and first.valid
    holder = await second.holder()
    assert holder is not None and holder.holder == first.me.holder
    await first.release()
    assert await second.acquire(), "a released lease is free at once"
    assert not await first.renew(), "the old holder's compare-and-set fails"
    await wait_for(lambda: _free(first), timeout=5, what="the lease to expire")
    assert not await second.renew(), "an expired lease is not renewed: it was taken"
    await first.release()


async def _free(lease: Lease) -> bool:
    return await lease.acquire()


async def test_a_new_holder_sorts_what_a_dead_one_left_before_sending(settings: Settings, unique: str) -> None:
    """The dead holder's events come back in the order their ack_wait ran out; the next holder sends by stream order.

    The "dead holder" is this test: it takes the lease, pulls six events of one
    key, touches the first three a second later (so they expire last), and
    never renews nor acknowledges. The worker that takes over must still send
    0..5 in order.
    """
    fast = msgspec.structs.replace(settings, webhook_timeout=1.0)  # ack_wait 3 s
    receiver = _KeyedReceiver()
    path = f"/takeover-{unique}"
    async with serve_receiver(receiver), open_engine(fast, name="test-takeover") as eng:
        try:
            sub = await eng.service.create(
                SubscriptionCreate(
                    name=f"takeover-{unique}",
                    url=receiver.endpoint(path),
                    event_types=["issue.updated"],
                    ordering="entity",
                )
            )
            dead = await Lease.open(eng.js, fast, lease_name(sub))
            dead.ttl = 2
            assert await dead.acquire()
            await eng.publisher.emit_many(
                [
                    build_event(event_type="issue.updated", entity_id=unique, data={"current": {"k": unique, "n": n}})
                    for n in range(6)
                ]
            )
            pull = await eng.js.pull_subscribe_bind(consumer_name(sub), fast.stream_name)
            msgs = await pull.fetch(6, timeout=5)
            assert len(msgs) == 6
            await asyncio.sleep(1.0)
            for msg in msgs[:3]:
                await msg.in_progress()
            async with running_engine(eng, settings=fast):
                await wait_for(lambda: len(receiver.spans) >= 6, timeout=15, what="the six events after the takeover")
                await asyncio.sleep(0.2)
        finally:
            for leftover in await eng.subscriptions.list(limit=1000):
                await eng.service.delete(leftover.id)
    assert [s.n for s in receiver.spans] == [0, 1, 2, 3, 4, 5]


async def test_a_stopping_holder_hands_over_at_once_without_duplicates(engine: Engine, unique: str) -> None:
    """A graceful stop (SIGTERM, a paused subscription) gives its waiting events back and releases the lease."""
    keys, per_key = 4, 15
    receiver = _KeyedReceiver(delay=0.05)
    path = f"/handover-{unique}"
    async with serve_receiver(receiver), running_engine(engine, copies=2) as run:
        sub = await run.subscribe(
            name=f"handover-{unique}", url=receiver.endpoint(path), event_types=["issue.updated"], ordering="entity"
        )
        await engine.publisher.emit_many(
            [
                build_event(event_type="issue.updated", entity_id=f"{unique}-{k}", data={"current": {"k": k, "n": n}})
                for n in range(per_key)
                for k in range(keys)
            ]
        )
        await wait_for(lambda: len(receiver.spans) >= 12, what="the first deliveries")

        def holding() -> list[EntityLoop]:
            loops = [w._loops[sub.id] for w in run.workers]
            return [loop for loop in loops if isinstance(loop, EntityLoop) and loop.holds_lease]

        (holder,) = holding()
        await holder.stop()
        stopped, before = time.monotonic(), len(receiver.spans)
        await wait_for(lambda: len(receiver.spans) > before, timeout=5, what="the standby to take over")
        took_over = time.monotonic() - stopped
        await wait_for(lambda: len(receiver.spans) >= keys * per_key, timeout=15, what="every event")
        await asyncio.sleep(0.3)
        assert [loop is not holder for loop in holding()] == [True]
    per = _per_key(receiver.spans)
    assert all(per[str(k)] == list(range(per_key)) for k in range(keys)), per
    assert took_over < 3.0, f"the standby took {took_over:.1f}s"


async def test_the_consumer_lets_out_what_the_ordering_allows(engine: Engine, receiver: Receiver, unique: str) -> None:
    sub = await engine.service.create(
        SubscriptionCreate(name=f"pending-{unique}", url=receiver.endpoint("/p"), event_types=["issue.updated"])
    )

    async def outstanding() -> int | None:
        info = await engine.js.consumer_info(engine.settings.stream_name, consumer_name(sub))
        return info.config.max_ack_pending

    assert await outstanding() == 10_000
    await engine.service.update(sub.id, SubscriptionPatch(ordering="strict"))
    assert await outstanding() == 1, "strict: one event outstanding, whatever the number of workers"
    await engine.service.update(sub.id, SubscriptionPatch(ordering="entity", max_in_flight=8))
    assert await outstanding() == 32, "entity: what the holder keeps in hand"
    await engine.service.update(sub.id, SubscriptionPatch(ordering="none"))
    assert await outstanding() == 10_000


async def test_strict_with_more_than_one_in_flight_is_refused(engine: Engine, receiver: Receiver, unique: str) -> None:
    fields = {"url": receiver.endpoint("/r"), "event_types": ["issue.updated"]}
    with pytest.raises(EventValidationError) as refused:
        await engine.service.create(
            SubscriptionCreate(name=f"r-{unique}", ordering="strict", max_in_flight=4, **fields)  # type: ignore[arg-type]
        )
    assert refused.value.field == "max_in_flight"
    assert await engine.subscriptions.list(limit=1000) == []
    sub = await engine.service.create(SubscriptionCreate(name=f"r-{unique}", max_in_flight=4, **fields))  # type: ignore[arg-type]
    with pytest.raises(EventValidationError):
        await engine.service.update(sub.id, SubscriptionPatch(ordering="strict"))
    assert (
        await engine.service.update(sub.id, SubscriptionPatch(ordering="strict", max_in_flight=None))
    ).ordering == "strict"
