"""Self-healing endpoints and loop prevention, end to end: real nats-server, real receivers, real SQLite.

Probes here come within a second (``WEBHOOK_PROBE_DELAY`` 0.2 s doubling to 0.4 s)
and a chain stops past depth 3, so that the tests stay short.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from consumers import DeliveryClient, Engine, Prober, SubscriptionCreate, delivery_id_for, verify
from streams import CAUSATION_HEADER, Event, Settings, decode_event
from tests.support import Received, Receiver, Running, wait_for

_MAX_DEPTH = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, webhook_probe_delay=0.2, webhook_probe_max_delay=0.4, max_causation_depth=_MAX_DEPTH
    )


async def _events(engine: Engine, event_type: str) -> list[Event]:
    """Every stored event of ``event_type`` (the session's stream is shared: callers filter by their ids)."""
    js = engine.js
    psub = await js.pull_subscribe(f"turbo.{event_type}", stream=engine.settings.stream_name)
    found: list[Event] = []
    try:
        while True:
            try:
                msgs = await psub.fetch(256, timeout=0.5)
            except TimeoutError:
                break
            found += [decode_event(m.data) for m in msgs]
            if len(msgs) < 256:
                break
    finally:
        await psub.unsubscribe()
    return found


async def _status(running: Running, sub_id: uuid.UUID) -> str:
    return (await running.engine.subscriptions.get(sub_id)).status


def _is_probe(r: Received) -> bool:
    return r.event["event_type"] == "system.subscription_probe"


async def test_a_disabled_subscription_heals_itself_and_delivers_its_backlog_in_order(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/heal-{unique}"
    # 410 disables it at once; the first probe finds the receiver still down (503), the second finds it back.
    sub = await running.subscribe(
        name=f"heal-{unique}", url=receiver.endpoint(path, [410, 503, 200]), event_types=["issue.*"], max_in_flight=1
    )
    first = await running.engine.publisher.emit(event_type="issue.created", entity_id=unique)

    async def disabled() -> bool:
        return await _status(running, sub.id) == "disabled"

    await wait_for(disabled, what="the subscription to be disabled")
    later = [await running.engine.publisher.emit(event_type="issue.updated", entity_id=unique) for _ in range(4)]

    async def active() -> bool:
        return await _status(running, sub.id) == "active"

    await wait_for(active, what="a probe to re-enable it")
    wanted = [str(first.event_id), *(str(a.event_id) for a in later)]
    await wait_for(lambda: len(receiver.at(path)) >= 3 + len(wanted), what="the backlog after the recovery")

    got = receiver.at(path)
    assert got[0].event_id == str(first.event_id), "the delivery answered 410"
    probes = [r for r in got if _is_probe(r)]
    assert len(probes) == 2, "one failed probe (503), one answered 2xx"
    assert got[1:3] == probes, "nothing but probes while it is disabled"
    for probe in probes:
        verify(sub.secret, probe.headers, probe.body)  # signed like any delivery
        assert probe.event["entity_id"] == str(sub.id)
    assert probes[0].event_id != probes[1].event_id, "each probe is its own ping"
    assert [r.event_id for r in got[3:]] == wanted, "the kept backlog, in stream order, after the 2xx"

    healed = await running.engine.subscriptions.get(sub.id)
    assert (healed.consecutive_failures, healed.probe_attempts, healed.next_probe_at) == (0, 0, None)
    assert healed.disabled_reason is None

    # Each probe is in the delivery log, as an attempt of trigger "probe".
    for probe, outcome, code in ((probes[0], "failed", 503), (probes[1], "success", 200)):
        detail = await running.engine.deliveries.get(delivery_id_for(sub.id, uuid.UUID(probe.event_id)))
        (attempt,) = detail.attempt_log
        assert (attempt.trigger, attempt.outcome, attempt.response_code) == ("probe", outcome, code)
        assert detail.event_type == "system.subscription_probe"

    # And each change is announced.
    failed = [
        e for e in await _events(running.engine, "system.subscription_probe_failed") if e.entity_id == str(sub.id)
    ]
    assert [e.data.current["response_code"] for e in failed] == [503]
    recovered: list[Event] = []

    async def announced() -> bool:  # published just after the save that re-enabled it
        events = await _events(running.engine, "system.subscription_recovered")
        recovered[:] = [e for e in events if e.entity_id == str(sub.id)]
        return bool(recovered)

    await wait_for(announced, what="the recovery's announcement")
    assert len(recovered) == 1 and "410" in recovered[0].data.current["disabled_reason"]


async def test_auto_recover_false_stays_disabled(running: Running, receiver: Receiver, unique: str) -> None:
    kept, healing = f"/kept-{unique}", f"/healing-{unique}"
    opted_out = await running.subscribe(
        name=f"kept-{unique}",
        url=receiver.endpoint(kept, [410, 200]),
        event_types=["milestone.created"],
        auto_recover=False,
    )
    # A twin that heals: once the prober re-enabled it, it has had every chance to probe the other too.
    twin = await running.subscribe(
        name=f"healing-{unique}", url=receiver.endpoint(healing, [410, 200]), event_types=["milestone.created"]
    )
    await running.engine.publisher.emit(event_type="milestone.created", entity_id=unique)

    async def twin_healed() -> bool:
        probed = any(_is_probe(r) for r in receiver.at(healing))
        return probed and running.recorder.prober.recovered >= 1 and await _status(running, twin.id) == "active"

    await wait_for(lambda: len(receiver.at(kept)) == 1 and len(receiver.at(healing)) >= 1, what="both deliveries")
    await wait_for(twin_healed, what="the twin to be probed and healed")
    still = await running.engine.subscriptions.get(opted_out.id)
    assert still.status == "disabled" and still.next_probe_at is None and still.probe_attempts == 0
    assert len(receiver.at(kept)) == 1, "never probed"


async def test_two_probers_at_once_are_one_probe_and_one_recovery(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    """Several recorders may probe the same due subscription: the copies are one delivery, one recovery."""
    path = f"/twice-{unique}"
    sub = await engine.service.create(
        SubscriptionCreate(name=f"twice-{unique}", url=receiver.endpoint(path), event_types=["issue.*"])
    )
    await engine.service.disable(sub.id, "HTTP 410 Gone")
    disabled = await engine.subscriptions.get(sub.id)
    await engine.service.schedule_probe(disabled, datetime.now(UTC) - timedelta(seconds=1))
    probers = [Prober(engine.settings, engine.deliveries, engine.service) for _ in range(2)]
    guarded = DeliveryClient(
        timeout=5.0,
        response_body_cap=1024,
        user_agent="test",
        guard_addresses=True,
        allowed_hosts=engine.settings.webhook_allowed_hosts,
    )
    async with guarded as client:
        assert await asyncio.gather(*(p.probe_due(client) for p in probers)) == [1, 1], "both probed it"

    first, second = receiver.at(path)
    assert first.headers["webhook-id"] == second.headers["webhook-id"], "one delivery to the receiver"
    assert first.event_id == second.event_id
    assert (await engine.subscriptions.get(sub.id)).status == "active"
    assert sum(p.recovered for p in probers) >= 1
    detail = await engine.deliveries.get(delivery_id_for(sub.id, uuid.UUID(first.event_id)))
    assert [a.trigger for a in detail.attempt_log] == ["probe", "probe"] and detail.status == "success"
    recovered = [e for e in await _events(engine, "system.subscription_recovered") if e.entity_id == str(sub.id)]
    assert len(recovered) == 1, "announced once"


async def test_a_probe_is_checked_at_the_address_it_dials(engine: Engine, receiver: Receiver, unique: str) -> None:
    """The deliveries' SSRF rules: a receiver on a loopback address is not probed unless its host is allowed."""
    path = f"/guarded-{unique}"
    sub = await engine.service.create(
        SubscriptionCreate(name=f"guarded-{unique}", url=receiver.endpoint(path), event_types=["issue.*"])
    )
    await engine.service.disable(sub.id, "HTTP 410 Gone")
    strict = msgspec.structs.replace(engine.settings, webhook_allowed_hosts=())
    prober = Prober(strict, engine.deliveries, engine.service)
    stop = asyncio.Event()
    task = asyncio.create_task(prober.run(stop))

    async def refused() -> bool:
        return (await engine.subscriptions.get(sub.id)).probe_attempts >= 1

    try:
        await wait_for(refused, what="a probe to be refused")
    finally:
        stop.set()
        await task
    after = await engine.subscriptions.get(sub.id)
    assert after.status == "disabled" and after.next_probe_at is not None
    assert receiver.at(path) == [], "never dialled"
    (probe,) = [
        d for d in await engine.deliveries.list(subscription_id=sub.id) if d.event_type == "system.subscription_probe"
    ]
    detail = await engine.deliveries.get(probe.id)
    (attempt,) = detail.attempt_log
    assert attempt.trigger == "probe" and attempt.response_code is None and attempt.error


@contextlib.asynccontextmanager
async def _replying(
    running: Running, receiver: Receiver, replies: dict[str, Callable[[Received], str]]
) -> AsyncIterator[None]:
    """Receivers that, on each delivery at a path of ``replies``, publish an event of the type it names,
    caused by that delivery (its ``Turbohooks-Causation`` header passed back, as a receiver does)."""
    seen = 0

    async def reply_all() -> None:
        nonlocal seen
        while True:
            await receiver.arrived.wait()
            receiver.arrived.clear()
            while seen < len(receiver.received):
                got = receiver.received[seen]
                seen += 1
                answer = replies.get(got.path)
                if answer is None:
                    continue
                causation = next(v for k, v in got.headers.items() if k.lower() == CAUSATION_HEADER.lower())
                await running.engine.publisher.emit(
                    event_type=answer(got), entity_id=str(got.event["entity_id"]), causation=causation
                )

    task = asyncio.create_task(reply_all())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_two_subscriptions_feeding_each_other_stop_at_the_depth_limit(
    running: Running, receiver: Receiver, unique: str
) -> None:
    a, b, watch = f"/a-{unique}", f"/b-{unique}", f"/watch-{unique}"
    # A answers each issue.created with an issue.updated, B each issue.updated with an issue.created: a loop.
    await running.subscribe(name=f"a-{unique}", url=receiver.endpoint(a), event_types=["issue.created"])
    await running.subscribe(name=f"b-{unique}", url=receiver.endpoint(b), event_types=["issue.updated"])
    # A bystander that sees both types (and the tag.removed that shows it went past everything before).
    await running.subscribe(
        name=f"watch-{unique}",
        url=receiver.endpoint(watch),
        event_types=["issue.created", "issue.updated", "tag.removed"],
        max_in_flight=1,
    )
    async with _replying(running, receiver, {a: lambda _: "issue.updated", b: lambda _: "issue.created"}):
        seed = await running.engine.publisher.emit(event_type="issue.created", entity_id=unique)

        found: list[Event] = []

        async def announced() -> bool:
            found[:] = [
                e
                for e in await _events(running.engine, "system.causation_loop_stopped")
                if e.data.current["subscription_name"] in (f"a-{unique}", f"watch-{unique}")
            ]
            return bool(found)

        await wait_for(announced, what="the loop to be stopped and announced")
        stopped_id = found[0].data.current["stopped_event_id"]
        tag = await running.engine.publisher.emit(event_type="tag.removed", entity_id=unique)
        await wait_for(lambda: str(tag.event_id) in {r.event_id for r in receiver.at(watch)}, what="the bystander")

    chain = [r.event for r in receiver.at(watch) if r.event_id != str(tag.event_id)]
    assert chain[0]["event_id"] == str(seed.event_id)
    assert [(e["chain"] or {}).get("depth", 0) for e in chain] == list(range(_MAX_DEPTH + 1)), "delivered to depth 3"
    assert stopped_id not in {str(e["event_id"]) for e in chain}, "the event past the limit reached nobody"
    assert stopped_id not in {r.event_id for r in receiver.at(a)}
    # Stopped at two subscriptions (A and the bystander), announced once.
    (announcement,) = [
        e
        for e in await _events(running.engine, "system.causation_loop_stopped")
        if e.data.current["stopped_event_id"] == stopped_id
    ]
    assert announcement.data.current["depth"] == _MAX_DEPTH + 1
    assert announcement.data.current["max_depth"] == _MAX_DEPTH
    assert announcement.chain is None, "an announcement starts no chain of its own"
    assert running.worker.deliverer.loop_stops >= 2
    assert len(receiver.at(a)) == 2 and len(receiver.at(b)) == 2, "A got depths 0 and 2, B depths 1 and 3"


async def test_a_subscription_never_receives_what_its_own_delivery_caused(
    running: Running, receiver: Receiver, unique: str
) -> None:
    own, other = f"/own-{unique}", f"/other-{unique}"
    types = ["comment.created", "tag.removed"]
    sub = await running.subscribe(name=f"own-{unique}", url=receiver.endpoint(own), event_types=types, max_in_flight=1)
    await running.subscribe(name=f"other-{unique}", url=receiver.endpoint(other), event_types=types, max_in_flight=1)
    async with _replying(running, receiver, {own: lambda _: "comment.created"}):
        seed = await running.engine.publisher.emit(event_type="comment.created", entity_id=unique)
        await wait_for(lambda: len(receiver.at(other)) == 2, what="the reply to reach the other subscription")
    reply = receiver.at(other)[1].event
    assert reply["causation_id"] == str(seed.event_id)
    assert reply["chain"] == {"depth": 1, "subscription_id": str(sub.id)}
    tag = await running.engine.publisher.emit(event_type="tag.removed", entity_id=unique)
    await wait_for(lambda: str(tag.event_id) in {r.event_id for r in receiver.at(own)}, what="the own subscription")
    assert [r.event_id for r in receiver.at(own)] == [str(seed.event_id), str(tag.event_id)], "not its own reply"
