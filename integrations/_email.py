"""E-mail: one message per event, text and HTML, through SMTP (aiosmtplib).

The recipients are the config's ``to`` (and ``cc``), or the addresses of a
``mailto:`` subscription URL. The SMTP server comes from the worker's
settings (:class:`streams.settings.SmtpSettings`), read once when the transport opens:

==================  ===============================================================
``SMTP_HOST``       the server (default ``localhost``)
``SMTP_PORT``       its port (default 465 with ``SMTP_TLS``, 587 with ``SMTP_STARTTLS``, else 25)
``SMTP_USERNAME``   login, with ``SMTP_PASSWORD``; none by default
``SMTP_STARTTLS``   ``true`` requires STARTTLS, ``false`` never uses it; unset: when offered
``SMTP_TLS``        ``true``: implicit TLS from the first byte (port 465)
``SMTP_FROM``       the sender when a subscription names none (default ``turbohooks@localhost``)
==================  ===============================================================

SMTP answers become :class:`~integrations.SendResult` statuses the engine
already understands: accepted is 250 (success); a 4xx reply (greylisting, a
full mailbox, "try again later") is 503, retried; a 5xx reply (no such user,
refused sender, bad login) is 400, failed at once; no connection or a timeout
is retried. The SMTP code and text are kept in the answer's body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aiosmtplib
import msgspec

from streams import Event, EventValidationError
from streams.settings import SmtpSettings

from .core import (
    CONFIG_FIELD,
    Facts,
    OutgoingRequest,
    SendResult,
    TransportContext,
    TransportFactory,
    check_link_template,
    describe,
    dump_config,
    fact_fields,
    parse_config,
    plain_text,
    stored_config,
    truncate,
)

__all__ = ("EmailConfig", "EmailIntegration", "EmailTransport", "SmtpSettings", "email_transport")

_ADDRESS: Final = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
_MAX_RECIPIENTS: Final = 50
_MAX_SUBJECT: Final = 200
_MAX_PREFIX: Final = 50
_CONCURRENT_SENDS: Final = 4
_encoder: Final = msgspec.json.Encoder()


class EmailConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """An e-mail subscription's ``integration_config``."""

    to: list[str] = msgspec.field(default_factory=list)
    """Recipients' addresses (required unless the URL is ``mailto:``)."""
    cc: list[str] = msgspec.field(default_factory=list)
    sender: str | None = msgspec.field(default=None, name="from")
    """``from``: the sender's address; default ``SMTP_FROM``."""
    subject_prefix: str = "[Turbo] "
    link_template: str | None = None
    """Link to the entity in Turbo, shown as a button when the event carries no URL."""


class _Mail(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What :meth:`EmailIntegration.render` hands the transport (and the delivery log shows)."""

    to: list[str]
    cc: list[str] = msgspec.field(default_factory=list)
    sender: str | None = None
    subject: str
    text: str
    html: str
    event_id: str
    event_type: str


_mail_decoder: Final = msgspec.json.Decoder(_Mail)


def _check_addresses(addresses: list[str], field: str) -> list[str]:
    cleaned = []
    for index, address in enumerate(addresses):
        text = address.strip()
        if not _ADDRESS.match(text):
            raise EventValidationError(f"{field}[{index}]", f"{address!r} is not an e-mail address")
        cleaned.append(text)
    return cleaned


def _mailto(url: str) -> list[str]:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "mailto":
        return []
    return [unquote(a).strip() for a in parts.path.split(",") if a.strip()]


def _html(facts: Facts) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr><td style="color:#667085;padding:2px 12px 2px 0">{esc(name)}</td><td>{esc(value)}</td></tr>'
        for name, value in fact_fields(facts)
    )
    parts = [
        '<!doctype html><html><body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif">',
        f'<p style="color:#667085;margin:0">{esc(facts.headline)}</p>',
        f'<h2 style="margin:4px 0 12px">{esc(facts.title)}</h2>',
        f"<table>{rows}</table>" if rows else "",
    ]
    if facts.changes:
        items = "".join(f"<li>{esc(c.field)}: {esc(c.before)} → {esc(c.after)}</li>" for c in facts.changes)
        parts.append(f"<p>Changes:</p><ul>{items}</ul>")
    if facts.description:
        parts.append(f'<p style="white-space:pre-wrap">{esc(facts.description)}</p>')
    if facts.link:
        parts.append(f'<p><a href="{esc(facts.link, quote=True)}">Open in Turbo</a></p>')
    parts.append(
        f'<p style="color:#98a2b3;font-size:12px">{esc(facts.event_type)} · event {esc(facts.event_id)}</p>'
        "</body></html>"
    )
    return "".join(parts)


class EmailIntegration:
    """A text-and-HTML e-mail per event."""

    name: str = "email"
    signs: bool = False
    requires_url: bool = False
    """Deliveries go to SMTP, not to the URL; a ``mailto:`` URL may name the recipients."""

    config_type = EmailConfig

    def __init__(self) -> None:
        self.transport: TransportFactory | None = email_transport

    def load_config(self, config: EmailConfig | Mapping[str, Any]) -> EmailConfig:
        """The stored config as :class:`EmailConfig` (a Struct is returned as is)."""
        return stored_config(config, EmailConfig)

    def validate_config(self, config: Mapping[str, Any], url: str) -> dict[str, Any]:
        parsed = parse_config(config, EmailConfig)
        parsed.to = _check_addresses(parsed.to, f"{CONFIG_FIELD}.to")
        parsed.cc = _check_addresses(parsed.cc, f"{CONFIG_FIELD}.cc")
        if not parsed.to and not _mailto(url):
            raise EventValidationError(f"{CONFIG_FIELD}.to", "is required: the recipients' e-mail addresses")
        _check_addresses(_mailto(url), "url")
        if len(parsed.to) + len(parsed.cc) > _MAX_RECIPIENTS:
            raise EventValidationError(f"{CONFIG_FIELD}.to", f"more than {_MAX_RECIPIENTS} recipients")
        if parsed.sender is not None:
            parsed.sender = parsed.sender.strip()
            if not _ADDRESS.match(parsed.sender):
                raise EventValidationError(f"{CONFIG_FIELD}.from", f"{parsed.sender!r} is not an e-mail address")
        if len(parsed.subject_prefix) > _MAX_PREFIX or "\n" in parsed.subject_prefix or "\r" in parsed.subject_prefix:
            raise EventValidationError(
                f"{CONFIG_FIELD}.subject_prefix", f"must be one line of at most {_MAX_PREFIX} characters"
            )
        if parsed.link_template is not None:
            check_link_template(parsed.link_template, f"{CONFIG_FIELD}.link_template")
        return dump_config(parsed)

    def mail(self, event: Event, url: str, config: EmailConfig | Mapping[str, Any]) -> _Mail:
        """The message for ``event``: recipients, subject, text and HTML parts."""
        parsed = self.load_config(config)
        facts = describe(event, link_template=parsed.link_template)
        # Headers are one line: newlines from event data would be refused by the mail library.
        subject = " ".join(f"{parsed.subject_prefix}{facts.headline}: {facts.title}".split())
        return _Mail(
            to=list(dict.fromkeys([*parsed.to, *_mailto(url)])),
            cc=parsed.cc,
            sender=parsed.sender,
            subject=truncate(subject, _MAX_SUBJECT),
            text=plain_text(facts),
            html=_html(facts),
            event_id=str(event.event_id),
            event_type=event.event_type,
        )

    def render(self, event: Event, raw: bytes, url: str, config: EmailConfig | Mapping[str, Any]) -> OutgoingRequest:
        mail = self.mail(event, url, config)
        return OutgoingRequest(
            url="mailto:" + ",".join(mail.to), body=_encoder.encode(mail), headers={"Content-Type": "application/json"}
        )

    def retry_after(self, status: int | None, headers: Mapping[str, str], body: str) -> float | None:
        return None  # SMTP has no "retry after"; the schedule decides


def _message(mail: _Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = mail.subject
    message["From"] = sender
    message["To"] = ", ".join(mail.to)
    if mail.cc:
        message["Cc"] = ", ".join(mail.cc)
    message["Date"] = format_datetime(datetime.now(UTC))
    # The same id on every retry of one event to one list of recipients: mail clients fold duplicates.
    digest = hashlib.sha256(",".join(sorted(mail.to + mail.cc)).encode()).hexdigest()[:12]
    domain = sender.rpartition("@")[2] or "turbohooks"
    message["Message-ID"] = f"<{mail.event_id}.{digest}@{domain}>"
    message["X-Turbo-Event"] = mail.event_type
    message["X-Turbo-Event-Id"] = mail.event_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


class EmailTransport:
    """Sends rendered mails over SMTP; one connection per mail, a few at once."""

    def __init__(self, smtp: SmtpSettings, timeout: float) -> None:
        self.smtp = smtp
        self.timeout = timeout
        self._slots = asyncio.Semaphore(_CONCURRENT_SENDS)

    async def send(self, request: OutgoingRequest, event: Event, url: str, config: object) -> SendResult:
        mail = _mail_decoder.decode(request.body)
        sender = mail.sender or self.smtp.sender
        message = _message(mail, sender)
        payload = message.as_bytes()
        shown = {"SMTP-Server": f"{self.smtp.host}:{self.smtp.port}", "From": sender, "To": ", ".join(mail.to)}
        started = time.monotonic()

        def result(status: int | None, body: str, **extra: Any) -> SendResult:
            return SendResult(
                status=status,
                body=body,
                latency_ms=(time.monotonic() - started) * 1000,
                request_url=request.url,
                request_headers=shown,
                request_body=payload,
                **extra,
            )

        try:
            async with self._slots:
                refused, reply = await aiosmtplib.send(
                    message,
                    sender=sender,
                    recipients=[*mail.to, *mail.cc],
                    hostname=self.smtp.host,
                    port=self.smtp.port,
                    username=self.smtp.username,
                    password=self.smtp.password,
                    start_tls=self.smtp.start_tls,
                    use_tls=self.smtp.use_tls,
                    timeout=self.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            # Any temporary refusal is worth another try; only all-permanent is final.
            status = 503 if any(400 <= c < 500 for c in codes) else 400
            return result(status, f"SMTP refused every recipient: {detail}", headers={"smtp-code": str(codes[0])})
        except aiosmtplib.SMTPResponseException as exc:
            status = 503 if 400 <= exc.code < 500 else 400 if 500 <= exc.code < 600 else 502
            return result(status, f"SMTP {exc.code} {exc.message}", headers={"smtp-code": str(exc.code)})
        except aiosmtplib.SMTPTimeoutError as exc:
            return result(None, "", error=f"SMTP timed out: {exc}", error_kind="timeout")
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            return result(None, "", error=f"SMTP connection failed: {exc}", error_kind="connect")
        except aiosmtplib.SMTPNotSupported as exc:
            # STARTTLS or AUTH required but not offered: a setting to fix, not a retry.
            return result(400, f"SMTP: {exc}")
        except aiosmtplib.SMTPException as exc:
            return result(None, "", error=f"SMTP: {exc}", error_kind="protocol")
        partial = "; ".join(f"{addr}: {answer.code} {answer.message}" for addr, answer in refused.items())
        return result(250, reply + (f" (refused: {partial})" if partial else ""), headers={"smtp-code": "250"})


@contextlib.asynccontextmanager
async def email_transport(context: TransportContext) -> AsyncIterator[EmailTransport]:
    """The transport of one worker, with the worker's ``SMTP_*`` settings (a bad value stops it, naming it)."""
    yield EmailTransport(context.role(SmtpSettings), context.timeout)
