"""Rate limits across worker copies, a receiver's 429s, and one slow subscription beside a fast one.

Measured at a real receiver, against the session's nats-server; the limit across
copies with two ``turbohooks worker`` processes, the others with two in-process
workers on their own connections (each its own state, shared only through NATS).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec

from consumers import Engine, RateLimit, SubscriptionCreate, consumer_name
from consumers.engine import RedeliveryRequest, redeliver_subject
from streams import build_event, encode_event
from tests.support import BIN, Receiver, Running, engine_cli_env, running_engine, wait_for


def _between(receiver: Receiver, path: str, start: float, end: float) -> int:
    return sum(1 for r in receiver.at(path) if start <= r.at < end)


async def test_a_limit_of_10_per_second_holds_across_two_worker_processes(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    path = f"/limited-{unique}"
    sub = await engine.service.create(
        SubscriptionCreate(
            name=f"limited-{unique}",
            url=receiver.endpoint(path),
            event_types=["issue.created"],
            rate_limit=RateLimit(count=10, per="second"),
        )
    )
    env = engine_cli_env(engine.settings)
    workers = [
        await asyncio.create_subprocess_exec(
            str(BIN),
            "worker",
            "--integration",
            "webhook",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:

        async def both_pulling() -> bool:
            info = await engine.js.consumer_info(engine.settings.stream_name, consumer_name(sub))
            return (info.num_waiting or 0) >= 2

        # Each worker keeps a pull request outstanding on the shared consumer: both take events.
        await wait_for(both_pulling, timeout=30, what="both worker processes to pull")
        await engine.publisher.emit_many(
            [build_event(event_type="issue.created", entity_id=f"{unique}-{n}") for n in range(90)]
        )
        await wait_for(lambda: len(receiver.at(path)) >= 1, timeout=10, what="the first delivery")
        first = receiver.at(path)[0].at
        await asyncio.sleep(first + 6.2 - time.monotonic())
        measured = _between(receiver, path, first + 1.0, first + 6.0)
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            await asyncio.wait_for(worker.wait(), 30)
    # 10/s over 5 s: 50 (two workers each at the limit would be 100).
    assert 45 <= measured <= 55, f"{measured} deliveries in 5 s at a limit of 10/s across two workers"


async def test_retry_after_pauses_both_workers_429s_halve_the_rate_and_it_climbs_back(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    path = f"/throttled-{unique}"
    receiver.extra_headers[path] = {"Retry-After": "1"}
    settings = msgspec.structs.replace(engine.settings, throttle_recovery=2.0, webhook_retry_count=20)
    async with running_engine(engine, copies=2, settings=settings) as running:
        sub = await running.subscribe(
            name=f"throttled-{unique}",
            url=receiver.endpoint(path),
            event_types=["issue.created"],
            rate_limit=RateLimit(count=20, per="second"),
        )
        await engine.publisher.emit_many(
            [build_event(event_type="issue.created", entity_id=f"{unique}-{n}") for n in range(300)]
        )
        await wait_for(lambda: len(receiver.at(path)) >= 20, timeout=10, what="deliveries at the limit")
        await wait_for(lambda: all(w.deliverer.attempts > 0 for w in running.workers), what="both workers to deliver")
        receiver.statuses[path] = 429
        refused_from = time.monotonic()
        await asyncio.sleep(2.5)  # three Retry-After pauses, each cut by the next 429
        del receiver.statuses[path]
        answered_from = time.monotonic()
        await asyncio.sleep(5.0)
        loops = [w._loops[sub.id] for w in running.workers]
        assert all(loop.throttled > 0 for loop in loops)
        held = sum(loop.throttled for loop in loops)
        # Counted where operators look: the worker's metrics and, through the recorder, the stats.
        assert sum(w.metrics.render().decode().count('outcome="throttled"') for w in running.workers) >= 2
        since = datetime.now(UTC) - timedelta(minutes=2)

        async def counted() -> bool:
            window = (await engine.deliveries.subscription_windows(since)).get(sub.id)
            return window is not None and window.throttled >= held

        await wait_for(counted, what="the throttled deliveries in the stats")

    refused = [r.at for r in receiver.at(path) if refused_from <= r.at < answered_from]
    first_429 = refused[0]
    # Retry-After: 1 stops both workers for a second (what was already on its way excepted).
    # (From 0.3 s on: the pause reaches the other copy through a KV watch, a few tens of ms on
    # an idle machine, longer on a loaded one; at 20/s unpaused this window would see ~13.)
    quiet = _between(receiver, path, first_429 + 0.3, first_429 + 0.95)
    assert quiet <= 1, f"{quiet} requests during the receiver's Retry-After"
    assert len(refused) <= 8, f"{len(refused)} requests in 2.5 s of 429s with Retry-After: 1"
    # Halved by the repeated 429s: well below 20/s in the second after they stop...
    after = _between(receiver, path, answered_from, answered_from + 1.0)
    assert after <= 14, f"{after} deliveries in the first second of 2xx after repeated 429s"
    # ...then back to the configured rate (recovery 2 s).
    recovered = _between(receiver, path, answered_from + 3.5, answered_from + 4.5)
    assert 16 <= recovered <= 23, f"{recovered} deliveries/s after recovering, at a limit of 20/s"


async def test_a_subscription_answering_in_2_s_does_not_slow_one_answering_at_once(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    slow, fast = f"/slow-{unique}", f"/fast-{unique}"
    receiver.endpoint(slow, delay=2.0)
    async with running_engine(engine) as running:
        await running.subscribe(
            name=f"slow-{unique}", url=receiver.endpoint(slow), event_types=["issue.updated"], max_in_flight=200
        )
        await running.subscribe(name=f"fast-{unique}", url=receiver.endpoint(fast), event_types=["issue.created"])
        await engine.publisher.emit_many(
            [build_event(event_type="issue.updated", entity_id=f"{unique}-s{n}") for n in range(400)]
        )
        await wait_for(lambda: len(receiver.at(slow)) >= 200, timeout=10, what="the slow one's window to fill")
        published = time.monotonic()
        await engine.publisher.emit_many(
            [build_event(event_type="issue.created", entity_id=f"{unique}-f{n}") for n in range(300)]
        )
        await wait_for(lambda: len(receiver.at(fast)) >= 300, timeout=20, what="the fast one's deliveries")
        arrivals = [r.at for r in receiver.at(fast)]
        slow_in_flight = len(receiver.at(slow))
    first, rate = arrivals[0] - published, len(arrivals) / (arrivals[-1] - published)
    # Alone, this fast receiver takes ~500/s here. Held behind the slow one's connections (a shared
    # pool capped per host at 128) its first request waited 2.0 s for one and it averaged ~70/s.
    assert first < 1.0, f"the fast subscription's first delivery waited {first:.2f} s ({slow_in_flight} slow sent)"
    # (~500/s on an idle machine; the bound leaves room for a loaded one, where 109/s was seen.)
    assert rate >= 90, f"the fast subscription delivered {rate:.0f}/s beside the slow one ({slow_in_flight} sent)"


async def test_429s_halve_a_subscription_without_a_limit_from_its_observed_rate(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    path = f"/unlimited-{unique}"
    receiver.endpoint(path, delay=0.05)  # with 5 in flight: about 100/s
    settings = msgspec.structs.replace(engine.settings, throttle_recovery=2.0, webhook_retry_count=20)
    async with running_engine(engine, settings=settings) as running:
        sub = await running.subscribe(
            name=f"unlimited-{unique}", url=receiver.endpoint(path), event_types=["issue.created"], max_in_flight=5
        )
        throttle = running.worker._loops[sub.id].throttle
        await engine.publisher.emit_many(
            [build_event(event_type="issue.created", entity_id=f"{unique}-{n}") for n in range(600)]
        )
        await wait_for(lambda: len(receiver.at(path)) >= 20, timeout=10, what="deliveries")
        await asyncio.sleep(1.0)
        before = _between(receiver, path, time.monotonic() - 1.0, time.monotonic())
        receiver.statuses[path] = 429  # no Retry-After: no pause, only the cuts
        await asyncio.sleep(1.2)
        del receiver.statuses[path]
        answered_from = time.monotonic()
        cut_to = throttle.rate
        await wait_for(lambda: throttle.rate is None, timeout=6, what="the rate to climb back")
        recovered_at = time.monotonic()
        await asyncio.sleep(1.0)
    assert cut_to is not None, "429s gave a subscription without a limit one"
    # Halved (or more) from the rate the worker observed, which on a loaded machine is not exactly
    # the receiver's count of the second before: well under it is the claim.
    assert cut_to <= before * 0.75, f"cut to {cut_to:.0f}/s from {before}/s observed"
    after = _between(receiver, path, answered_from, answered_from + 0.5)
    assert after <= before * 0.35, f"{after} deliveries in 0.5 s after the 429s, {before}/s before"
    again = _between(receiver, path, recovered_at, recovered_at + 1.0)
    assert again >= before * 0.6, f"{again}/s once recovered, {before}/s before"


async def test_a_worker_stops_at_once_while_its_deliveries_wait_out_a_pause(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    path = f"/paused-{unique}"
    receiver.endpoint(path, statuses=[429, 200])
    receiver.extra_headers[path] = {"Retry-After": "60"}
    async with running_engine(engine) as running:
        sub = await running.subscribe(
            name=f"paused-{unique}", url=receiver.endpoint(path), event_types=["tag.created"], max_in_flight=1
        )
        await engine.publisher.emit_many(
            [build_event(event_type="tag.created", entity_id=f"{unique}-{n}") for n in range(5)]
        )
        await wait_for(lambda: len(receiver.at(path)) >= 1, timeout=10, what="the 429")
        loop = running.worker._loops[sub.id]
        await wait_for(lambda: loop._pull is not None and loop._pull.in_hand == 1, what="the next event in hand")
        stopping = time.monotonic()
        running.stop.set()
        await asyncio.gather(*running.tasks)
        stopped = time.monotonic() - stopping
    # Without halting, the stop waited for the deliveries in hand (the attempt timeout + 1 s, 6 s here).
    assert loop.throttled == 0, "the waiting delivery was never sent"
    assert stopped < 3.0, f"stopping took {stopped:.1f} s with deliveries waiting out a 60 s Retry-After"
    assert len(receiver.at(path)) == 1, "nothing more was sent during the pause"
    info = await engine.js.consumer_info(engine.settings.stream_name, consumer_name(sub))
    assert info.num_ack_pending + (info.num_pending or 0) >= 4, "the waiting events are still the stream's"


async def test_a_paused_subscriptions_replay_does_not_hold_the_retries_of_others(
    running: Running, receiver: Receiver, unique: str
) -> None:
    paused, other = f"/replayed-{unique}", f"/retried-{unique}"
    receiver.endpoint(paused, statuses=[429, 200])
    receiver.extra_headers[paused] = {"Retry-After": "60"}
    sub = await running.subscribe(name=f"replayed-{unique}", url=receiver.endpoint(paused), event_types=["tag.created"])
    neighbour = await running.subscribe(
        name=f"retried-{unique}", url=receiver.endpoint(other), event_types=["tag.applied"]
    )
    await running.engine.publisher.emit(event_type="tag.created", entity_id=unique)
    await wait_for(lambda: len(receiver.at(paused)) == 1, what="the 429 that pauses it for 60 s")
    js = running.engine.js
    for n in range(16):  # one fetch of the shared redelivery queue, all for the paused subscription
        event = build_event(event_type="tag.created", entity_id=f"{unique}-{n}")
        request = RedeliveryRequest(subscription_id=sub.id, trigger="replay", event=msgspec.Raw(encode_event(event)))
        await js.publish(redeliver_subject("webhook", sub.id), msgspec.json.encode(request))
    retried = build_event(event_type="tag.applied", entity_id=unique)
    request = RedeliveryRequest(
        subscription_id=neighbour.id, trigger="manual", event=msgspec.Raw(encode_event(retried))
    )
    await js.publish(redeliver_subject("webhook", neighbour.id), msgspec.json.encode(request))
    # Before: the batch waited out the 60 s pause, and the other subscription's retry with it.
    await wait_for(lambda: len(receiver.at(other)) == 1, timeout=5, what="the other subscription's retry")
    assert len(receiver.at(paused)) == 1, "the paused subscription's replay waits"


async def test_a_slow_subscriptions_replay_does_not_hold_the_retries_of_others(
    running: Running, receiver: Receiver, unique: str
) -> None:
    slow, other = f"/slow-replay-{unique}", f"/quick-retry-{unique}"
    receiver.endpoint(slow, delay=2.0)
    sub = await running.subscribe(
        name=f"slow-replay-{unique}", url=receiver.endpoint(slow), event_types=["tag.created"]
    )
    neighbour = await running.subscribe(
        name=f"quick-retry-{unique}", url=receiver.endpoint(other), event_types=["tag.applied"]
    )
    js = running.engine.js
    for n in range(16):  # one fetch of the shared redelivery queue, all for the slow subscription
        event = build_event(event_type="tag.created", entity_id=f"{unique}-{n}")
        request = RedeliveryRequest(subscription_id=sub.id, trigger="replay", event=msgspec.Raw(encode_event(event)))
        await js.publish(redeliver_subject("webhook", sub.id), msgspec.json.encode(request))
    await wait_for(lambda: len(receiver.at(slow)) >= 1, what="the slow replay to start")
    retried = build_event(event_type="tag.applied", entity_id=unique)
    request = RedeliveryRequest(
        subscription_id=neighbour.id, trigger="manual", event=msgspec.Raw(encode_event(retried))
    )
    queued = time.monotonic()
    await js.publish(redeliver_subject("webhook", neighbour.id), msgspec.json.encode(request))
    await wait_for(lambda: len(receiver.at(other)) == 1, timeout=5, what="the other subscription's retry")
    waited = receiver.at(other)[0].at - queued
    # Before: the batch of 16 was awaited whole, and the retry waited for the slow answers (2 s).
    assert waited < 1.0, f"a retry waited {waited:.2f} s behind another subscription's slow replay"


async def test_a_delivery_waiting_longer_than_ack_wait_is_not_redelivered_meanwhile(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    path = f"/long-wait-{unique}"
    receiver.endpoint(path, statuses=[429, 200])
    receiver.extra_headers[path] = {"Retry-After": "3"}
    settings = msgspec.structs.replace(engine.settings, webhook_timeout=0.5)  # ack_wait 2.5 s
    async with running_engine(engine, copies=2, settings=settings) as running:
        await running.subscribe(
            name=f"long-wait-{unique}", url=receiver.endpoint(path), event_types=["tag.created"], max_in_flight=1
        )
        first = await engine.publisher.emit(event_type="tag.created", entity_id=f"{unique}-first")
        await wait_for(lambda: len(receiver.at(path)) == 1, what="the 429 that pauses both workers for 3 s")
        # Taken by one worker while the other one, idle, keeps a pull request outstanding.
        held = await engine.publisher.emit(event_type="tag.created", entity_id=f"{unique}-held")
        seen = lambda: Counter(r.event_id for r in receiver.at(path))  # noqa: E731
        await wait_for(
            lambda: seen()[str(first.event_id)] == 2 and seen()[str(held.event_id)] >= 1,
            timeout=15,
            what="the retry of the first and the held one",
        )
        await asyncio.sleep(0.5)
    counts = Counter(r.event_id for r in receiver.at(path))
    # The event answered 429 comes twice (its retry); the other waited out the 3 s pause in a
    # worker's hands, telling JetStream so: without that, the idle worker got it again after
    # ack_wait (2.5 s) and both sent it.
    assert counts[str(first.event_id)] == 2, counts
    assert counts[str(held.event_id)] == 1, counts
