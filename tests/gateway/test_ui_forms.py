"""The subscription form's fields of conditional delivery: read, shown back, refused beside the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from consumers import Engine, RateLimit, Subscription
from consumers.secrets import masked
from gateway.ui._forms import SubscriptionForm, create_body, draft_body, patch_body, read_form

_FORM = {
    "name": "orders",
    "url": "https://example.com/hook",
    "integration": "webhook",
    "event_types": ["issue.created"],
    "filters": '{"data.current.priority": "high"}',
    "template": '{"a": 1,\r\n "b": {{ entity_id|tojson }}}',
    "template_content_type": "application/json",
    "rate_count": "10",
    "rate_per": "minute",
    "ordering": "entity",
    "ordering_key": "context.project_id",
    "redact_fields": "email, data.token",
    "auto_recover": "",
}


def test_the_form_reads_into_the_bodies_and_shows_a_subscription_back() -> None:
    errors: dict[str, str] = {}
    body = create_body(read_form(_FORM), errors)
    assert errors == {} and body is not None
    assert body.filters == {"data.current.priority": "high"}
    assert body.template == '{"a": 1,\n "b": {{ entity_id|tojson }}}'  # browsers' CRLF made LF: lines as typed
    assert body.rate_limit == RateLimit(count=10, per="minute")
    assert (body.ordering, body.ordering_key, body.redact_fields) == (
        "entity",
        "context.project_id",
        ["email", "data.token"],
    )
    assert body.auto_recover is False  # an unchecked box is not sent

    now = datetime.now(UTC)
    sub = Subscription(
        id=uuid.uuid4(),
        name="orders",
        url=body.url,
        event_types=["issue.created"],
        created_at=now,
        updated_at=now,
        filters=body.filters,
        template=body.template,
        rate_limit=body.rate_limit,
        ordering="entity",
        ordering_key="context.project_id",
        redact_fields=body.redact_fields,
        auto_recover=False,
        template_content_type="application/json",
    )
    shown = SubscriptionForm.of(sub)
    patch = patch_body(shown, "webhook", errors)
    assert errors == {} and patch is not None
    assert (patch.filters, patch.template, patch.rate_limit) == (body.filters, body.template, body.rate_limit)
    assert (patch.redact_fields, patch.auto_recover, patch.ordering_key) == (
        body.redact_fields,
        False,
        "context.project_id",
    )
    draft = draft_body(read_form(_FORM), errors, limit=20)
    assert draft is not None and draft.template == body.template and draft.limit == 20


def test_bad_filter_json_and_rate_are_refused_beside_their_fields() -> None:
    errors: dict[str, str] = {}
    assert create_body(read_form({**_FORM, "filters": '{"a":', "rate_count": "ten"}), errors) is None
    assert errors["filters"].startswith("not JSON: line 1 column")
    assert "whole number" in errors["rate_limit"]
    errors = {}
    assert create_body(read_form({**_FORM, "filters": "[1]"}), errors) is None
    assert "JSON object" in errors["filters"]


async def test_an_edit_form_saved_unchanged_changes_nothing(engine: Engine, unique: str) -> None:
    errors: dict[str, str] = {}
    body = create_body(read_form({**_FORM, "name": f"edit-{unique}", "url": "http://127.0.0.1:9/x"}), errors)
    assert body is not None, errors
    sub = await engine.service.create(body)
    patch = patch_body(SubscriptionForm.of(masked(sub)), sub.integration, errors)
    assert patch is not None, errors
    saved = await engine.service.update(sub.id, patch)
    for name in (
        "filters",
        "template",
        "template_content_type",
        "rate_limit",
        "ordering",
        "ordering_key",
        "redact_fields",
        "auto_recover",
        "event_types",
        "url",
    ):
        assert getattr(saved, name) == getattr(sub, name), name
