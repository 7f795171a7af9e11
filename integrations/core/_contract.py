"""What an integration is: a way to turn an event into what its service expects.

Most integrations only *render*: they turn an event into an HTTP request
(:class:`OutgoingRequest`) that the engine signs, sends with its pooled client,
retries and records. Some need more than one POST (GitHub mirrors issues and
keeps a mapping; e-mail speaks SMTP): they also provide a :class:`Transport`,
opened once per worker process, that performs the send and reports a
:class:`SendResult` the engine classifies like an HTTP answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import msgspec
from nats.js import JetStreamContext

from streams import Event, Settings
from streams.settings import Config, RoleSettings, load_config

__all__ = (
    "ConfigT",
    "ErrorKind",
    "Integration",
    "OutgoingRequest",
    "SendResult",
    "Transport",
    "TransportContext",
    "TransportFactory",
)

ErrorKind = Literal["timeout", "connect", "protocol", "request"]
"""Why an attempt got no answer: timed out, could not connect, a broken exchange, or ``request``:
the HTTP client refused to send the request itself (a header it will not write): never sent."""

ConfigT = TypeVar("ConfigT", bound=msgspec.Struct)
"""An integration's config Struct."""
_ConfigT_contra = TypeVar("_ConfigT_contra", contravariant=True)
_RoleT = TypeVar("_RoleT", bound=RoleSettings)


class OutgoingRequest(msgspec.Struct, kw_only=True):
    """The request an integration wants sent for one event."""

    url: str
    body: bytes
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Content headers of the integration; the engine adds identity and signature headers."""


class SendResult(msgspec.Struct, kw_only=True):
    """The outcome of one send, the engine's POST or a custom transport's: an answer, an error, or both.

    ``status`` is the HTTP status of the service's answer (for SMTP: 250 on
    success, the SMTP reply code otherwise); the engine classifies it like any
    delivery (2xx success, 429/5xx retried, other 4xx failed). Both a status
    and an ``error`` when the status line arrived but reading the body failed:
    the status still counts, ``error`` says what went wrong afterwards.
    The one result type of a send: the engine's HTTP client returns it too.
    """

    status: int | None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Response headers (the HTTP client lower-cases names and joins repeated ones with ``, ``)."""
    body: str = ""
    """The response body, UTF-8 with replacement characters, at most ``response_body_cap`` bytes of it."""
    truncated: bool = False
    """Whether the body was longer than the cap (the rest was not downloaded)."""
    latency_ms: float
    error: str | None = None
    error_kind: ErrorKind | None = None
    request_url: str = ""
    """What a custom transport actually sent, when it differs from the rendered request (empty: as rendered)."""
    request_headers: dict[str, str] = msgspec.field(default_factory=dict)
    request_body: bytes = b""


class TransportContext(msgspec.Struct, kw_only=True, frozen=True):
    """What a transport may use: the settings, JetStream (KV state), the attempt timeout.

    ``config`` is the configuration the process read at start; a transport asks it
    for its role's settings with :meth:`role` (SMTP, GitHub's tokens) when it opens.
    """

    settings: Settings
    js: JetStreamContext
    timeout: float
    config: Config | None = None
    """The process's configuration (:func:`streams.settings.load_config`); ``None``: read when asked."""

    def role(self, kind: type[_RoleT]) -> _RoleT:
        """The settings of ``kind``'s role, from :attr:`config` (read now, once, when there is none)."""
        return (self.config or load_config()).role(kind)


@runtime_checkable
class Transport(Protocol):
    """Performs the send for integrations that need more than one signed POST."""

    async def send(
        self, request: OutgoingRequest, event: Event, url: str, config: Any
    ) -> SendResult:  # pragma: no cover - protocol
        """Send ``request``; ``config`` is the integration's parsed config (a stored mapping is accepted too)."""
        ...


class TransportFactory(Protocol):
    """Opens a transport for the lifetime of a worker process."""

    def __call__(self, context: TransportContext) -> AbstractAsyncContextManager[Transport]: ...


@runtime_checkable
class Integration(Protocol[_ConfigT_contra]):
    """One kind of destination (custom webhook, Slack, Discord, …), generic in its config Struct.

    The config is checked when a subscription is saved (:meth:`validate_config`)
    and parsed once when the worker loads the subscription (:meth:`load_config`);
    :meth:`render` receives that typed config. ``render`` also accepts the
    stored mapping (converted on the call) for one-off callers such as a test send.

    ``render`` returns ``None`` for an event the integration does not send
    (Claude skips comments written by the AI): the engine acknowledges it and
    records nothing. ``transport`` is ``None`` for integrations whose request is
    one POST that the engine sends itself.
    """

    name: str
    """The integration kind, as in ``--integration``: ``webhook``, ``slack``, …"""
    signs: bool
    """Whether deliveries carry the Standard Webhooks and ``X-Turbo-Signature-256`` headers."""
    transport: TransportFactory | None

    def validate_config(self, config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """Check a subscription's integration config; raise ``EventValidationError`` naming the field."""
        ...

    def load_config(self, config: Mapping[str, Any]) -> Any:
        """The stored (already validated) config as the integration's Struct; once per subscription load."""
        ...

    def render(
        self, event: Event, raw: bytes, url: str, config: _ConfigT_contra | Mapping[str, Any]
    ) -> OutgoingRequest | None:
        """The request for ``event``; ``raw`` is the envelope exactly as stored in the stream."""
        ...

    def retry_after(self, status: int | None, headers: Mapping[str, str], body: str) -> float | None:
        """Seconds the service asked to wait (``Retry-After``, Discord's ``retry_after``), if any."""
        ...
