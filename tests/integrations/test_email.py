"""E-mail through the engine's Worker into a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from consumers import Engine, delivery_id_for
from integrations import SmtpSettings
from streams import ConfigError
from tests.support import Running, running_engine, settled

from .fakes import FakeSmtp

CONFIG = {"to": ["ops@example.com"], "cc": ["lead@example.com"], "subject_prefix": "[Turbo] "}


@pytest.fixture
async def mail_running(engine: Engine, smtp: FakeSmtp, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    """A worker whose e-mail transport talks to the fake (SMTP_* are read when it opens)."""
    monkeypatch.setenv("SMTP_HOST", smtp.host)
    monkeypatch.setenv("SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("SMTP_FROM", "turbo@example.com")
    async with running_engine(engine) as run:
        yield run


async def _settled(running: Running, sub_id: uuid.UUID, event_id: uuid.UUID) -> tuple[str, list[int | None]]:
    detail = await settled(running, sub_id, event_id)
    return detail.status, [a.response_code for a in detail.attempt_log]


async def _subscribe(running: Running, smtp: FakeSmtp, unique: str) -> uuid.UUID:
    # The URL is a placeholder until the service accepts mailto: (deliveries go to SMTP, not to it).
    sub = await running.subscribe(
        name=f"mail-{unique}",
        url=f"http://127.0.0.1:{smtp.port}/mail",
        event_types=["issue.*"],
        integration="email",
        integration_config=CONFIG,
    )
    return sub.id


async def test_a_mail_with_text_and_html_parts_arrives(mail_running: Running, smtp: FakeSmtp, unique: str) -> None:
    sub_id = await _subscribe(mail_running, smtp, unique)
    ack = await mail_running.engine.publisher.emit(
        event_type="issue.assigned",
        entity_id=unique,
        data={"current": {"title": "Bug\nin <login>", "assignee": "bob", "priority": "high", "url": "https://t/1"}},
        actor={"type": "user", "name": "ada@example.com"},
    )
    assert await _settled(mail_running, sub_id, ack.event_id) == ("success", [250])
    (message,) = smtp.messages
    assert smtp.envelopes == [("turbo@example.com", ["ops@example.com", "lead@example.com"])]
    assert message["Subject"] == "[Turbo] Issue assigned: Bug in <login>"
    assert message["To"] == "ops@example.com" and message["Cc"] == "lead@example.com"
    assert message["X-Turbo-Event"] == "issue.assigned" and message["X-Turbo-Event-Id"] == str(ack.event_id)
    assert message["Message-ID"].startswith(f"<{ack.event_id}.")
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "Assignee: bob" in text.get_content() and "https://t/1" in text.get_content()
    assert "in &lt;login&gt;</h2>" in html.get_content() and '<a href="https://t/1">' in html.get_content()


async def test_a_temporary_refusal_is_retried(mail_running: Running, smtp: FakeSmtp, unique: str) -> None:
    sub_id = await _subscribe(mail_running, smtp, unique)
    smtp.data_replies.append("451 4.3.0 Try again later")
    ack = await mail_running.engine.publisher.emit(event_type="issue.created", entity_id=unique)
    assert await _settled(mail_running, sub_id, ack.event_id) == ("success", [503, 250])
    assert len(smtp.messages) == 1


async def test_a_permanent_refusal_fails_at_once(mail_running: Running, smtp: FakeSmtp, unique: str) -> None:
    sub_id = await _subscribe(mail_running, smtp, unique)
    smtp.refused["ops@example.com"] = "550 5.1.1 No such user"
    smtp.refused["lead@example.com"] = "550 5.1.1 No such user"
    ack = await mail_running.engine.publisher.emit(event_type="issue.created", entity_id=unique)
    assert await _settled(mail_running, sub_id, ack.event_id) == ("failed", [400])
    detail = await mail_running.engine.deliveries.get(delivery_id_for(sub_id, ack.event_id))
    assert "550 5.1.1 No such user" in (detail.attempt_log[0].response_body or "")
    assert smtp.messages == []


def test_smtp_settings_name_a_bad_variable() -> None:
    assert SmtpSettings.from_env({}).port == 25
    assert SmtpSettings.from_env({"SMTP_STARTTLS": "true"}).port == 587
    assert SmtpSettings.from_env({"SMTP_TLS": "yes"}).port == 465
    for env, variable in (({"SMTP_PORT": "smtp"}, "SMTP_PORT"), ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS")):
        with pytest.raises(ConfigError) as caught:
            SmtpSettings.from_env(env)
        assert caught.value.variable == variable
