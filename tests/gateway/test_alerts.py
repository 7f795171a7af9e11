"""The alerts: each raised once when its condition starts, cleared once when it ends, delivered as events."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import msgspec

from consumers import Engine
from consumers.log import SubscriptionWindow
from gateway.operations import AlertEvaluator, SubscriptionHealth, alert_conditions, subscription_health
from gateway.operations._alerts import Alert
from streams import heartbeat, silent_processes
from streams._heartbeat import process_key
from streams.settings import HealthSettings
from tests.support import Receiver, running_engine, wait_for

_ALERT_TYPES = ["system.health_check_failed", "system.health_check_recovered"]


def _health(name: str = "s", *, status: str = "active", oldest: float = 0.0) -> SubscriptionHealth:
    return SubscriptionHealth(
        subscription_id=uuid.UUID(int=1),
        name=name,
        integration="webhook",
        status=status,
        consumer=True,
        pending=0,
        in_flight=0,
        oldest_pending_seconds=oldest,
        retries_scheduled=0,
        dead_letters=0,
        last_5m=SubscriptionWindow(),
        last_1h=SubscriptionWindow(),
    )


def test_the_conditions_and_their_bounds() -> None:
    settings = HealthSettings()  # the defaults: > 20 % of >= 20 attempts, 5 timeouts, one 401/403, one dead, 5 min
    sub = _health()
    sid = sub.subscription_id

    def kinds(window: SubscriptionWindow, health: SubscriptionHealth = sub, **more: Any) -> set[str]:
        return {a.kind for a in alert_conditions([health], {sid: window}, settings, **more).values()}

    assert kinds(SubscriptionWindow(attempts=19, success=0)) == set()  # too few attempts to judge
    assert kinds(SubscriptionWindow(attempts=20, success=16)) == set()  # 20 % is not more than 20 %
    assert kinds(SubscriptionWindow(attempts=20, success=15)) == {"failure_rate"}
    assert kinds(SubscriptionWindow(attempts=30, success=30, timeouts=4)) == set()
    assert kinds(SubscriptionWindow(attempts=30, success=25, timeouts=5)) == {"timeouts"}
    assert kinds(SubscriptionWindow(attempts=1, auth_failures=1, dead=1)) == {"auth_failures", "dead_letters"}
    assert kinds(SubscriptionWindow(), _health(oldest=301.0)) == {"lag"}
    assert kinds(SubscriptionWindow(), _health(oldest=301.0, status="paused")) == set()  # paused: waiting is meant
    silent = alert_conditions([], {}, settings, {"worker.host.1": 42.0})
    assert list(silent) == ["process_silent.worker.host.1"] and silent["process_silent.worker.host.1"].value == 42.0


async def test_a_heartbeat_that_stops_is_silence_a_clean_stop_is_not(engine: Engine) -> None:
    js, settings = engine.js, engine.settings
    key = process_key("worker")
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeat(js, settings, "worker", stop, every=0.1))
    await wait_for(lambda: _has(js, settings, key), what="the first heartbeat")
    assert key not in await silent_processes(js, settings, 0.5)
    beating.cancel()  # a process that dies keeps its key, which goes silent
    await wait_for(lambda: _silent(js, settings, key), what="the heartbeat to go silent")
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeat(js, settings, "worker", stop, every=0.1))
    await wait_for(lambda: _has_fresh(js, settings, key), what="the process back")
    stop.set()
    await beating
    assert key not in await silent_processes(js, settings, 0.0), "a clean stop deletes the key"


async def _has(js: Any, settings: Any, key: str) -> bool:
    return key in await silent_processes(js, settings, -1.0)


async def _has_fresh(js: Any, settings: Any, key: str) -> bool:
    return key in await silent_processes(js, settings, -1.0) and key not in await silent_processes(js, settings, 0.5)


async def _silent(js: Any, settings: Any, key: str) -> bool:
    return key in await silent_processes(js, settings, 0.5)


async def test_each_alert_is_raised_once_and_cleared_once_and_reaches_a_subscription(
    engine: Engine, receiver: Receiver, unique: str
) -> None:
    settings = msgspec.structs.replace(engine.settings, webhook_timeout=1.0)
    health = HealthSettings(
        alert_interval=0.3,
        alert_window=3.0,
        alert_min_attempts=2,
        alert_timeouts=2,
        alert_lag=1.0,
    )
    async with running_engine(engine, settings=settings) as running:
        await running.subscribe(name=f"pager-{unique}", url=receiver.url + "/pager", event_types=_ALERT_TYPES)
        refused = await running.subscribe(
            name=f"refused-{unique}", url=receiver.endpoint("/refused", [401]), event_types=["issue.*"]
        )
        slow = await running.subscribe(
            name=f"slow-{unique}",
            url=receiver.endpoint("/slow", delay=1.5),  # past the 1 s timeout: every attempt times out
            event_types=["issue.*"],
            retry_schedule=[0.2],
        )
        lagging = await running.subscribe(
            name=f"lagging-{unique}",
            url=receiver.endpoint("/lagging", delay=0.4),
            event_types=["issue.*"],
            max_in_flight=1,
        )
        stop = asyncio.Event()
        evaluator = asyncio.create_task(AlertEvaluator(engine, health).run(stop))
        try:
            # Six events one after the other (one in flight at a time): the sixth waits about 2 s.
            for n in range(6):
                await engine.publisher.emit(event_type="issue.created", entity_id=f"{unique}-{n}")

            def announced(kind: str, sub_id: uuid.UUID, status: str) -> int:
                return sum(
                    1
                    for r in receiver.at("/pager")
                    if r.event["data"]["current"].get("alert_key") == f"{kind}.{sub_id.hex}"  # type: ignore[index]
                    and r.event["data"]["current"].get("status") == status  # type: ignore[index]
                )

            expected = [
                ("auth_failures", refused.id),
                ("dead_letters", refused.id),
                ("timeouts", slow.id),
                ("failure_rate", slow.id),
                ("dead_letters", slow.id),
                ("lag", lagging.id),
            ]
            await wait_for(
                lambda: all(announced(kind, sid, "raised") for kind, sid in expected),
                timeout=20,
                what="every alert raised",
            )
            # The dead letter is in the dead-letter stream too, under the subscription's subject.
            assert (await subscription_health(engine, refused)).dead_letters == 6  # one per event
            # A restarted evaluator raises nothing again: the raised alerts are held in the bucket.
            again, _ = await AlertEvaluator(engine, health).evaluate()
            assert not {a.key for a in again} & {f"{kind}.{sid.hex}" for kind, sid in expected}
            await wait_for(
                lambda: all(announced(kind, sid, "cleared") for kind, sid in expected),
                timeout=20,
                what="every alert cleared once its condition ended",
            )
            await asyncio.sleep(2 * health.alert_interval)  # time for a second announcement, were there one
        finally:
            stop.set()
            await evaluator
    ours = {refused.id.hex, slow.id.hex, lagging.id.hex}
    seen = Counter(
        (r.event["data"]["current"]["alert_key"], r.event["event_type"])  # type: ignore[index]
        for r in receiver.at("/pager")
        if r.event["data"]["current"].get("alert_key", "").split(".")[-1] in ours  # type: ignore[index, union-attr]
    )
    assert set(seen.values()) == {1}, seen  # no alert raised or cleared twice
    for key, event_type in list(seen):
        assert event_type in _ALERT_TYPES
        assert seen[(key, "system.health_check_recovered")] == seen[(key, "system.health_check_failed")] == 1, key
    first = next(r for r in receiver.at("/pager") if r.event["event_type"] == "system.health_check_failed")
    current = first.event["data"]["current"]  # type: ignore[index]
    assert current["check"] == "alert" and current["summary"] and "threshold" in current


async def test_evaluators_clearing_the_same_alert_at_once_both_finish(engine: Engine, unique: str) -> None:
    """Two evaluators (two gateways) clear one alert together: the one that loses the race carries on.

    Found by the suite on a loaded machine: nats-py raises a KV delete's lost
    compare-and-set as a plain 400 (err_code 10071), which stopped an evaluation.
    """
    health = HealthSettings()
    evaluators = [AlertEvaluator(engine, health) for _ in range(3)]
    kv = await evaluators[0]._bucket()
    for round_ in range(5):
        key = f"lag.{uuid.uuid4().hex}"  # a subscription that does not exist: its condition has ended
        alert = Alert(key=key, kind="lag", summary=f"test {unique} {round_}", value=1.0, threshold=0.0)
        await kv.put(key, msgspec.json.encode({"alert": alert, "raised_at": "2026-12-01T00:00:00Z", "announced": True}))
        results = await asyncio.gather(*(e.evaluate() for e in evaluators), return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert key not in {k for k, _ in (await evaluators[0].held()).items()}
        assert any(key in {a.key for a in cleared} for _, cleared in results if not isinstance(cleared, BaseException))
