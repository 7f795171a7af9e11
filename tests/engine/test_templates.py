"""Templated deliveries end to end, the checks on save, and the preview against what is then delivered."""

from __future__ import annotations

import msgspec
import pytest
from nats.js.errors import NotFoundError

from consumers import DeadLetter, Engine, SubscriptionCreate, SubscriptionPatch, delivery_id_for, verify
from gateway.operations import SubscriptionDraft, preview
from streams import DEAD_LETTER_STREAM, EventValidationError
from tests.support import Receiver, Running, settled, wait_for

_TEMPLATE = (
    '{\n  "text": {{ ("New issue: " ~ data.current.title)|tojson }},\n'
    '  "priority": "{{ data.current.priority }}",\n  "by": {{ actor.name|tojson }},\n'
    '  "event": "{{ event_type }}:{{ entity_id }}"\n}'
)


async def test_a_templated_delivery_is_the_rendered_body_signed(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/tpl-{unique}"
    sub = await running.subscribe(
        name=f"tpl-{unique}", url=receiver.endpoint(path), event_types=["issue.created"], template=_TEMPLATE
    )
    text = await running.subscribe(
        name=f"txt-{unique}",
        url=receiver.endpoint(path + "-text"),
        event_types=["issue.created"],
        template="{{ actor.name }} opened {{ data.current.title }}",
        template_content_type="text/plain; charset=utf-8",
    )
    ack = await running.engine.publisher.emit(
        event_type="issue.created",
        entity_id=unique,
        data={"current": {"title": 'Login "fails"', "priority": "high"}},
        actor={"type": "user", "name": "ada@example.com"},
    )
    await wait_for(lambda: len(receiver.at(path)) == 1 and len(receiver.at(path + "-text")) == 1, what="both")
    got = receiver.at(path)[0]
    assert msgspec.json.decode(got.body) == {
        "text": 'New issue: Login "fails"',
        "priority": "high",
        "by": "ada@example.com",
        "event": f"issue.created:{unique}",
    }
    assert got.headers["Content-Type"] == "application/json"
    verify(sub.secret, got.headers, got.body)  # the signature covers the rendered body

    plain = receiver.at(path + "-text")[0]
    assert plain.body == b'ada@example.com opened Login "fails"'
    assert plain.headers["Content-Type"] == "text/plain; charset=utf-8"
    verify(text.secret, plain.headers, plain.body)

    detail = await settled(running, sub.id, ack.event_id, status="success")
    assert msgspec.json.decode(detail.payload) == msgspec.json.decode(got.body)  # the log holds what was sent


async def test_a_render_that_fails_is_one_failed_attempt_nothing_sent_and_a_dead_letter(
    running: Running, receiver: Receiver, unique: str
) -> None:
    path = f"/tplfail-{unique}"
    # Renders (so it is saved) unless the event's priority is not a number.
    template = '{\n  "level": {{ 10 // data.current.priority|int(1) }}\n}'
    sub = await running.subscribe(
        name=f"tplfail-{unique}",
        url=receiver.endpoint(path),
        event_types=["issue.created"],
        template=template,
        retry_schedule=[0.05, 0.05],
    )
    ack = await running.engine.publisher.emit(
        event_type="issue.created", entity_id=unique, data={"current": {"priority": "0"}}
    )
    detail = await settled(running, sub.id, ack.event_id, status="failed")
    assert detail.attempts == 1
    attempt = detail.attempt_log[0]
    assert attempt.outcome == "failed" and attempt.response_code is None
    assert attempt.error == "template line 2: integer division or modulo by zero", attempt.error

    async def buried() -> bool:
        try:
            msg = await running.engine.js.get_last_msg(DEAD_LETTER_STREAM, f"turbohooks.dlq.{sub.id.hex}")
        except NotFoundError:
            return False
        letter = msgspec.json.decode(msg.data or b"", type=DeadLetter)
        return letter.delivery_id == delivery_id_for(sub.id, ack.event_id) and "line 2" in letter.reason

    await wait_for(buried, what="the dead letter")
    # The next event renders: the subscription is not stuck on the one that failed.
    ok = await running.engine.publisher.emit(
        event_type="issue.created", entity_id=unique, data={"current": {"priority": "5"}}
    )
    await wait_for(lambda: len(receiver.at(path)) == 1, what="the next delivery")
    assert msgspec.json.decode(receiver.at(path)[0].body) == {"level": 2}
    await settled(running, sub.id, ok.event_id, status="success")
    assert len(receiver.at(path)) == 1, "the failed render sent nothing"


async def test_templates_refused_on_save_name_the_line_and_save_nothing(engine: Engine, unique: str) -> None:
    async def refused(**fields: object) -> EventValidationError:
        with pytest.raises(EventValidationError) as err:
            await engine.service.create(
                SubscriptionCreate(name=f"bad-{unique}", event_types=["issue.created"], **fields)  # type: ignore[arg-type]
            )
        return err.value

    url = "http://127.0.0.1:9/x"
    syntax = await refused(url=url, template='{\n"a": {% if %}\n}')
    assert syntax.field == "template" and str(syntax).startswith("template: line 2: "), str(syntax)
    # Fails on every event (the stored one of issue.created, or the catalog sample).
    runtime = await refused(url=url, template='{"a": {{ data.current.nothing + 1 }}}')
    assert runtime.field == "template" and "fails on the event type issue.created: template line 1: " in str(runtime), (
        str(runtime)
    )
    not_json = await refused(url=url, template="{{ entity_id }} is not JSON")
    assert "the output is not JSON: line 1 column" in str(not_json), str(not_json)
    escape = await refused(url=url, template="{{ ''.__class__.__mro__ }}", template_content_type="text/plain")
    assert "unsafe" in str(escape)
    mail = await refused(url="mailto:ops@example.com", integration="email", template="{}")
    assert mail.field == "template" and "does not send a templatable body" in str(mail)
    lone = await refused(url=url, template_content_type="text/plain")
    assert lone.field == "template_content_type"
    assert [s for s in await engine.subscriptions.list(limit=1000) if s.name == f"bad-{unique}"] == []

    good = await engine.service.create(
        SubscriptionCreate(name=f"good-{unique}", url=url, event_types=["issue.created"], template='{"ok": true}')
    )
    with pytest.raises(EventValidationError, match="line 1"):
        await engine.service.update(good.id, SubscriptionPatch(template="{{ x ]}"))
    assert (await engine.service.get(good.id)).template == '{"ok": true}'
    cleared = await engine.service.update(good.id, SubscriptionPatch(template=None))
    assert cleared.template is None and cleared.template_content_type is None


async def test_preview_equals_what_is_then_delivered(running: Running, receiver: Receiver, unique: str) -> None:
    path = f"/preview-{unique}"
    fields = {"event_types": ["issue.created", "comment.created"], "template": _TEMPLATE}
    sub = await running.subscribe(name=f"preview-{unique}", url=receiver.endpoint(path), **fields)
    ack = await running.engine.publisher.emit(
        event_type="issue.created",
        entity_id=unique,
        data={"current": {"title": "Crash on save", "priority": "low"}},
        actor={"type": "ai", "name": "claude"},
    )
    await wait_for(lambda: len(receiver.at(path)) == 1, what="the delivery")
    await settled(running, sub.id, ack.event_id, status="success")

    result = await preview(
        running.engine,
        SubscriptionDraft(url=receiver.endpoint(path), limit=50, **fields),  # type: ignore[arg-type]
    )
    assert result.examined == len(result.items) <= 50
    assert all(item.event_type in ("issue.created", "comment.created") for item in result.items)
    seqs = [item.stream_seq for item in result.items]
    assert seqs == sorted(seqs, reverse=True), "newest first"
    mine = next(item for item in result.items if item.event_id == ack.event_id)
    assert mine.outcome == "send" and mine.content_type == "application/json"
    assert mine.body is not None and mine.body.encode() == receiver.at(path)[0].body

    # A draft refused on save is refused by the preview too, the field named.
    with pytest.raises(EventValidationError) as err:
        await preview(running.engine, SubscriptionDraft(event_types=["issue.created"], template="{% for %}"))
    assert err.value.field == "template"
    # Without a template the body is the stored envelope, byte for byte.
    plain = await preview(running.engine, SubscriptionDraft(event_types=["issue.created"], limit=1000))
    envelope = next(item for item in plain.items if item.event_id == ack.event_id)
    assert envelope.body is not None and msgspec.json.decode(envelope.body)["entity_id"] == unique
