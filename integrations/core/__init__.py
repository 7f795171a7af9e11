"""The engine<->integration contract and the leaf tools every integration (and the engine) uses.

The contract: :class:`Integration`, :class:`OutgoingRequest`, :class:`SendResult`
(the one result type of a send), :class:`Transport` and its factory, ``ErrorKind``.
The tools: config parsing (:func:`parse_config`), the JSON base
(:class:`JsonIntegration`), ``Retry-After`` parsing, render helpers, Standard
Webhooks signing and the destination URL rules. Nothing here imports the
delivery engine (``consumers``): the engine imports this.
"""

from __future__ import annotations

from ._config import (
    CONFIG_FIELD,
    LINK_FIELDS,
    check_http_url,
    check_link_template,
    check_webhook_path,
    dump_config,
    parse_config,
    stored_config,
)
from ._contract import (
    ConfigT,
    ErrorKind,
    Integration,
    OutgoingRequest,
    SendResult,
    Transport,
    TransportContext,
    TransportFactory,
)
from ._json import JsonIntegration, NoConfig, WebhookRule
from ._render import (
    ELLIPSIS,
    Change,
    Facts,
    describe,
    fact_fields,
    plain_text,
    priority_colour,
    text_of,
    truncate,
    utf16_len,
)
from ._retry_after import parse_retry_after, retry_after_header
from ._signing import (
    CE_TYPE_PREFIX,
    RESERVED_HEADERS,
    SECRET_PREFIX,
    SignatureError,
    build_headers,
    generate_secret,
    github_signature,
    header_problem,
    secret_bytes,
    sign,
    signature_header,
    verify,
)
from ._urls import METADATA_ADDRESSES, METADATA_HOSTS, address_problem, host_allowed, validate_destination

__all__ = (
    "CE_TYPE_PREFIX",
    "CONFIG_FIELD",
    "ELLIPSIS",
    "LINK_FIELDS",
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "RESERVED_HEADERS",
    "SECRET_PREFIX",
    "Change",
    "ConfigT",
    "ErrorKind",
    "Facts",
    "Integration",
    "JsonIntegration",
    "NoConfig",
    "OutgoingRequest",
    "SendResult",
    "SignatureError",
    "Transport",
    "TransportContext",
    "TransportFactory",
    "WebhookRule",
    "address_problem",
    "build_headers",
    "check_http_url",
    "check_link_template",
    "check_webhook_path",
    "describe",
    "dump_config",
    "fact_fields",
    "generate_secret",
    "github_signature",
    "header_problem",
    "host_allowed",
    "parse_config",
    "parse_retry_after",
    "plain_text",
    "priority_colour",
    "retry_after_header",
    "secret_bytes",
    "sign",
    "signature_header",
    "stored_config",
    "text_of",
    "truncate",
    "utf16_len",
    "validate_destination",
    "verify",
)
