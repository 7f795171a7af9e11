"""Custom headers: RFC 9110 field names and values at save; a request the HTTP client refuses is a failed attempt."""

from __future__ import annotations

import msgspec
import pytest

from consumers import DeliveryClient, Engine, SubscriptionCreate, SubscriptionPatch, delivery_id_for
from consumers.engine import classify
from streams import EventValidationError
from tests.support import Receiver, Running, wait_for


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("X-Ctl", "a\x01b", "control character"),
        ("X-Del", "a\x7fb", "control character"),
        ("X-Nul", "a\x00b", "control character"),
        ("X-C1", "a\x85b", "control character"),
        ("X-Lf", "a\nb", "control character"),
        ("X-Cr", "a\rb", "control character"),
        ("X-Pad", " padded", "begin or end"),
        ("X-Pad", "padded\t", "begin or end"),
        ("X Space", "v", "not a valid HTTP header name"),
        ("X-é", "v", "not a valid HTTP header name"),
        ("", "v", "not a valid HTTP header name"),
    ],
)
async def test_header_names_and_values_follow_rfc_9110_at_save(
    engine: Engine, receiver: Receiver, unique: str, name: str, value: str, says: str
) -> None:
    with pytest.raises(EventValidationError) as info:
        await engine.service.create(
            SubscriptionCreate(
                name=f"h-{unique}", url=receiver.endpoint("/h"), event_types=["issue.*"], headers={name: value}
            )
        )
    assert info.value.field == f"headers.{name}" and says in str(info.value)
    sub = await engine.service.create(
        SubscriptionCreate(name=f"ok-{unique}", url=receiver.endpoint("/h"), event_types=["issue.*"])
    )
    with pytest.raises(EventValidationError) as info:
        await engine.service.update(sub.id, SubscriptionPatch(headers={name: value}))
    assert info.value.field == f"headers.{name}"


async def test_valid_header_values_are_kept(engine: Engine, receiver: Receiver, unique: str) -> None:
    headers = {"X-Tab": "a\tb", "X-Text": "Bearer abc/def==", "X-Utf8": "café", "X-Empty": "", "X-Q": '"quoted" ~!'}
    sub = await engine.service.create(
        SubscriptionCreate(name=f"ok-{unique}", url=receiver.endpoint("/h"), event_types=["issue.*"], headers=headers)
    )
    assert sub.headers == headers


async def test_the_http_client_refusing_a_request_is_a_result_not_an_exception(receiver: Receiver) -> None:
    async with DeliveryClient(timeout=2.0, response_body_cap=100, user_agent="t/1") as client:
        result = await client.post(receiver.endpoint("/refused"), b"{}", {"X-Bad": "a\x01b"})
    assert result.status is None and result.error_kind == "request"
    assert result.error is not None and "refused" in result.error and "X-Bad" in result.error
    assert receiver.at("/refused") == []
    assert classify(None, "request") == "fail"  # sending it again would be refused again


async def test_a_subscription_with_a_bad_header_logs_failed_attempts_and_keeps_delivering(
    running: Running, receiver: Receiver, unique: str
) -> None:
    """A value saved before the check (or written to the registry by hand) fails its deliveries, visibly."""
    path = f"/bad-{unique}"
    sub = await running.subscribe(name=f"bad-{unique}", url=receiver.endpoint(path), event_types=["tag.created"])
    bad = msgspec.structs.replace(sub, headers={"X-Bad": "a\x7fb"})
    await running.engine.service.registry.put(bad)
    worker = running.workers[0]
    await wait_for(lambda: worker._loops[sub.id].sub.headers == bad.headers, what="the worker to take the header")

    for _ in range(2):
        ack = await running.engine.publisher.emit(event_type="tag.created", entity_id=unique)
        delivery_id = delivery_id_for(sub.id, ack.event_id)

        async def failed(delivery_id: object = delivery_id) -> bool:
            try:
                detail = await running.engine.deliveries.get(delivery_id)  # type: ignore[arg-type]
            except KeyError:
                return False
            return detail.status == "failed"

        await wait_for(failed, what="a failed attempt in the log")
        detail = await running.engine.deliveries.get(delivery_id)
        assert detail.attempts == 1
        error = detail.attempt_log[-1].error
        assert error is not None and "X-Bad" in error and "request" in error
    assert receiver.at(path) == []
