"""Which values of a subscription are secrets: sealed at rest (SQL, the KV mirror), masked when shown.

The secrets of a subscription:

* its signing secrets, current and previous;
* every custom header value, **at rest**: encrypting them all costs nothing and
  covers a credential under any name. **When shown** (views, recorded requests),
  the values of headers named like a credential are masked: a name containing
  ``auth``, ``token``, ``secret``, ``key``, ``pass``, ``cookie``, ``session``,
  ``credential`` or ``signature`` (``Authorization``, ``X-Api-Key``,
  ``X-Auth-Token``...). Other headers (``X-Team: platform``) are configuration a
  person reads back to check a subscription, and stay readable;
* the integration config's credentials: a key named like one (``token``,
  ``password``, ``secret``, ``api_key``, ``*_token``, ...), e.g. the GitHub
  integration's ``token``. ``*_env`` keys name a variable, not a value.

Masking shows ``whsec_…abcd`` / ``…abcd``: enough to tell two values apart,
never enough to use one. A value shorter than 12 characters shows no character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from integrations.core import SECRET_PREFIX

from .._messages import Subscription
from ._keyring import ENVELOPE_PREFIX, Keyring

__all__ = (
    "MASK",
    "is_credential_name",
    "is_foreign",
    "is_masked",
    "is_secret_header",
    "is_stale",
    "mask",
    "mask_config",
    "mask_headers",
    "mask_request_headers",
    "masked",
    "seal",
    "seal_config",
    "seal_headers",
    "unseal",
    "unseal_config",
    "unseal_headers",
)

MASK: Final = "…"
_SHOWN: Final = 4
_SHOWN_FROM: Final = 12
"""A value shorter than this shows no character of itself."""

_CREDENTIAL: Final = re.compile(
    r"(^|[_-])(token|secret|password|passwd|pass|api[_-]?key|apikey|credentials?|auth|authorization|cookie|"
    r"private[_-]?key|session|signing[_-]?key|access[_-]?key)($|[_-])",
    re.IGNORECASE,
)
_MASKED: Final = re.compile(rf"^(?:{SECRET_PREFIX})?{MASK}.{{0,{_SHOWN}}}$", re.DOTALL)
_NOT_A_VALUE: Final = re.compile(r"[_-]env$", re.IGNORECASE)
_SECRET_HEADER_WORDS: Final = (
    "auth",
    "token",
    "secret",
    "key",
    "pass",
    "cookie",
    "session",
    "credential",
    "signature",
)
_CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"}
)
"""Request headers masked in recorded attempts whoever set them (a transport, an integration)."""


def is_credential_name(name: str) -> bool:
    """Whether a config key or header name says its value is a credential (``token``, ``X-Api-Key``...)."""
    if _NOT_A_VALUE.search(name):
        return False
    return name.lower() in _CREDENTIAL_HEADERS or _CREDENTIAL.search(name) is not None


def mask(value: str) -> str:
    """``whsec_…abcd`` / ``…abcd``: the last 4 characters of a long enough value, nothing of a short one."""
    prefix = SECRET_PREFIX if value.startswith(SECRET_PREFIX) else ""
    rest = value[len(prefix) :]
    tail = rest[-_SHOWN:] if len(rest) >= _SHOWN_FROM else ""
    return f"{prefix}{MASK}{tail}"


def is_masked(value: object) -> bool:
    """Whether ``value`` has the shape :func:`mask` shows (a client sending back what it was shown)."""
    return isinstance(value, str) and _MASKED.match(value) is not None


def is_secret_header(name: str) -> bool:
    """Whether a custom header's value is masked when shown: its name says credential."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS) or is_credential_name(name)


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Custom headers as shown: the values of credential-named ones masked."""
    return {name: mask(value) if is_secret_header(name) else value for name, value in headers.items()}


def mask_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """An integration config as shown: its credentials masked."""
    return {key: _mask_value(key, value) for key, value in config.items()}


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str) and is_credential_name(key):
        return mask(value)
    if isinstance(value, Mapping):
        return mask_config(value)
    return value


def mask_request_headers(headers: Mapping[str, str], custom: Mapping[str, str]) -> dict[str, str]:
    """Sent headers as recorded: credential-named ones masked (custom ones by :func:`is_secret_header`).

    The signatures turbohooks computes stay: they are not secrets (they sign one body
    at one time, and a receiver's operator compares them with what arrived).
    """
    secret = {name.lower() for name in custom if is_secret_header(name)}
    return {
        name: mask(value) if name.lower() in secret or is_credential_name(name) else value
        for name, value in headers.items()
    }


def seal_headers(headers: Mapping[str, str], keyring: Keyring) -> dict[str, str]:
    """Every custom header value encrypted."""
    return {name: keyring.encrypt(value) for name, value in headers.items()}


def unseal_headers(headers: Mapping[str, str], keyring: Keyring) -> dict[str, str]:
    """The clear header values."""
    return {name: keyring.decrypt(value) for name, value in headers.items()}


def seal_config(config: Mapping[str, Any], keyring: Keyring) -> dict[str, Any]:
    """The config with its credentials encrypted."""
    return {key: _sealed(key, value, keyring) for key, value in config.items()}


def unseal_config(config: Mapping[str, Any], keyring: Keyring) -> dict[str, Any]:
    """The config with its credentials in clear."""
    return {key: _unsealed(value, keyring) for key, value in config.items()}


def _sealed(key: str, value: Any, keyring: Keyring) -> Any:
    if isinstance(value, str) and is_credential_name(key):
        return keyring.encrypt(value)
    if isinstance(value, Mapping):
        return seal_config(value, keyring)
    return value


def _unsealed(value: Any, keyring: Keyring) -> Any:
    if isinstance(value, str):
        return keyring.decrypt(value)
    if isinstance(value, Mapping):
        return unseal_config(value, keyring)
    return value


def seal(sub: Subscription, keyring: Keyring) -> Subscription:
    """``sub`` with every secret encrypted (for SQL and the KV mirror)."""
    return msgspec.structs.replace(
        sub,
        secret=keyring.encrypt(sub.secret) if sub.secret else sub.secret,
        previous_secret=keyring.encrypt(sub.previous_secret) if sub.previous_secret else sub.previous_secret,
        signing_key=keyring.encrypt(sub.signing_key) if sub.signing_key else sub.signing_key,
        previous_signing_key=(
            keyring.encrypt(sub.previous_signing_key) if sub.previous_signing_key else sub.previous_signing_key
        ),
        tls_client_key=keyring.encrypt(sub.tls_client_key) if sub.tls_client_key else sub.tls_client_key,
        headers=seal_headers(sub.headers, keyring),
        integration_config=seal_config(sub.integration_config, keyring),
    )


def unseal(sub: Subscription, keyring: Keyring) -> Subscription:
    """``sub`` with every secret in clear (what the workers sign and send with)."""
    return msgspec.structs.replace(
        sub,
        secret=keyring.decrypt(sub.secret),
        previous_secret=keyring.decrypt(sub.previous_secret) if sub.previous_secret else sub.previous_secret,
        signing_key=keyring.decrypt(sub.signing_key) if sub.signing_key else sub.signing_key,
        previous_signing_key=(
            keyring.decrypt(sub.previous_signing_key) if sub.previous_signing_key else sub.previous_signing_key
        ),
        tls_client_key=keyring.decrypt(sub.tls_client_key) if sub.tls_client_key else sub.tls_client_key,
        headers=unseal_headers(sub.headers, keyring),
        integration_config=unseal_config(sub.integration_config, keyring),
    )


def is_stale(stored: Subscription, keyring: Keyring) -> bool:
    """Whether a stored (sealed) subscription holds a secret in clear or under an older key this ring holds.

    One under a key the ring does not hold (:meth:`Keyring.is_foreign`) is not stale: it cannot be
    re-encrypted here (see :func:`is_foreign`).
    """
    values = _secret_values(stored)
    if any(value and keyring.is_foreign(value) for value in values):
        return False
    return any(value and not keyring.is_current(value) for value in values)


def is_foreign(stored: Subscription, keyring: Keyring) -> bool:
    """Whether a stored subscription holds a secret sealed under a key this process does not have."""
    return any(value and keyring.is_foreign(value) for value in _secret_values(stored))


def _secret_values(stored: Subscription) -> list[str]:
    values = [stored.secret, stored.previous_secret or "", *stored.headers.values()]
    values += [stored.signing_key or "", stored.previous_signing_key or "", stored.tls_client_key or ""]
    return values + _config_credentials(stored.integration_config)


def _config_credentials(config: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key, value in config.items():
        if isinstance(value, str) and (is_credential_name(key) or value.startswith(ENVELOPE_PREFIX)):
            found.append(value)
        elif isinstance(value, Mapping):
            found += _config_credentials(value)
    return found


def masked(sub: Subscription) -> Subscription:
    """``sub`` as shown on a page or in a form: every secret masked (sent back unchanged, the service keeps it)."""
    return msgspec.structs.replace(
        sub,
        secret=mask(sub.secret) if sub.secret else sub.secret,
        previous_secret=mask(sub.previous_secret) if sub.previous_secret else sub.previous_secret,
        signing_key=mask(sub.signing_key) if sub.signing_key else sub.signing_key,
        previous_signing_key=mask(sub.previous_signing_key) if sub.previous_signing_key else sub.previous_signing_key,
        tls_client_key=mask(sub.tls_client_key) if sub.tls_client_key else sub.tls_client_key,
        headers=mask_headers(sub.headers),
        integration_config=mask_config(sub.integration_config),
    )
