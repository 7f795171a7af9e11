"""The one set of parsers every setting is read with: text in, value out, ``ValueError`` saying what to write.

A parser never names the variable: the loader does (:class:`~streams.ConfigError`),
so the same parser serves the environment and the settings file.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Callable, Iterable
from datetime import time as clock_time
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = (
    "Parser",
    "parse_bool",
    "parse_choice",
    "parse_clock",
    "parse_command",
    "parse_database_url",
    "parse_duration",
    "parse_durations",
    "parse_email",
    "parse_int",
    "parse_list",
    "parse_path",
    "parse_port",
    "parse_secret_keys",
    "parse_size",
    "parse_text",
    "parse_thresholds",
    "parse_url",
    "parse_weekday",
    "positive",
)

Parser = Callable[[str], Any]
"""Text of a variable → its value; raises ``ValueError`` with what to write instead."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")


def parse_text(text: str) -> str:
    """The text, stripped."""
    return text.strip()


def parse_secret_keys(text: str) -> tuple[str, ...]:
    """Base64 of 32 bytes; several comma-separated during a key rotation (the first encrypts).

    The message never repeats the value (it is a key).
    """
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    if not keys:
        raise ValueError("is empty: give a base64 key of 32 bytes (`openssl rand -base64 32`)")
    for index, key in enumerate(keys, 1):
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {index} is not base64 (generate one with `openssl rand -base64 32`)") from None
        if len(raw) != 32:
            raise ValueError(f"key {index} must be 32 bytes in base64 (`openssl rand -base64 32`), not {len(raw)}")
    return keys


def parse_database_url(text: str) -> str:
    """A SQLAlchemy URL with an async driver: ``sqlite+aiosqlite:///…`` or ``postgresql+asyncpg://…``.

    The messages never repeat the URL: it may carry a password.
    """
    url = text.strip()
    scheme, sep, _ = url.partition("://")
    backend = scheme.lower().partition("+")[0]
    if not sep or backend not in ("sqlite", "postgresql", "postgres"):
        raise ValueError("is not a supported database URL; write sqlite+aiosqlite:///<path> or postgresql+asyncpg://…")
    wanted = "sqlite+aiosqlite" if backend == "sqlite" else "postgresql+asyncpg"
    if scheme.lower() != wanted and scheme.lower() != "postgresql+psycopg":
        why = "is not a name SQLAlchemy knows" if backend == "postgres" else "has no async driver"
        raise ValueError(f"{scheme}:// {why}; write {wanted}://…")
    return url


def parse_path(text: str) -> Path:
    """A filesystem path."""
    return Path(text.strip())


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean; write true or false")


def parse_int(text: str) -> int:
    """A whole number, not negative."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def parse_duration(text: str) -> float:
    """Seconds in ``"500ms"``, ``"30"``, ``"5m"``, ``"2h"``, ``"7d"`` (a bare number is seconds)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 7d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_size(text: str) -> int:
    """Bytes in ``"1GiB"``, ``"512MB"``, ``"1048576"``; -1 means unlimited."""
    if text.strip() == "-1":
        return -1
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; write e.g. 512MiB or 10GiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "")[:1].lower()]


def positive(parse: Callable[[str], float]) -> Callable[[str], float]:
    """``parse``, refusing zero."""

    def parse_positive(text: str) -> float:
        value = parse(text)
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    return parse_positive


def parse_port(text: str) -> int:
    """A TCP port, 1-65535."""
    value = parse_int(text)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


def parse_list(item: Parser = parse_text) -> Callable[[str], tuple[Any, ...]]:
    """Comma-separated values, each read with ``item``; empty parts are skipped."""

    def parse_items(text: str) -> tuple[Any, ...]:
        return tuple(item(part) for part in text.split(",") if part.strip())

    return parse_items


def parse_durations(text: str) -> tuple[float, ...]:
    """Comma-separated durations, in the order given (``5s,5m,30m``)."""
    return parse_list(parse_duration)(text)


def parse_thresholds(text: str) -> tuple[float, ...]:
    """Comma-separated positive durations, distinct, longest first (``7d,3d,1d``)."""
    return tuple(sorted(set(parse_list(positive(parse_duration))(text)), reverse=True))


def parse_url(*schemes: str, several: bool = False) -> Parser:
    """A URL whose scheme is one of ``schemes`` and that names a host (``several``: comma-separated URLs)."""

    def parse_one(text: str) -> str:
        url = text.strip()
        parts = urlsplit(url)
        if parts.scheme.lower() not in schemes or not parts.netloc:
            raise ValueError(f"{url!r} is not a {' or '.join(s + '://' for s in schemes)} URL")
        return url

    def parse_urls(text: str) -> str:
        return ",".join(parse_one(part) for part in text.split(",") if part.strip())

    return parse_urls if several else parse_one


def parse_choice(choices: Iterable[str], *, upper: bool = False) -> Callable[[str], str]:
    """One of ``choices``, compared without case; returned as written in ``choices``."""
    listed = tuple(choices)

    def parse_one(text: str) -> str:
        wanted = text.strip().lower()
        for choice in listed:
            if choice.lower() == wanted:
                return choice.upper() if upper else choice
        raise ValueError(f"{text!r} is not one of {', '.join(listed)}")

    return parse_one


def parse_clock(text: str) -> clock_time:
    """A time of day, ``HH:MM`` (UTC)."""
    try:
        parsed = clock_time.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day; write HH:MM in UTC, e.g. 09:00") from None
    return parsed.replace(tzinfo=None)


def parse_weekday(text: str) -> int:
    """A day of the week (``monday``, ``fri``: at least three letters); 0 is Monday."""
    lowered = text.strip().lower()
    for index, name in enumerate(_WEEKDAYS):
        if len(lowered) >= 3 and name.startswith(lowered):
            return index
    raise ValueError(f"{text!r} is not a day of the week; write e.g. monday")


def parse_command(text: str) -> tuple[str, ...]:
    """A command line, split as a shell would."""
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a command line: {exc}") from None
    if not words:
        raise ValueError("is empty")
    return words


def parse_email(text: str) -> str:
    """An e-mail address."""
    address = text.strip()
    if not _ADDRESS.match(address):
        raise ValueError(f"{address!r} is not an e-mail address")
    return address
