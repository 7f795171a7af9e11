"""Destination URL rules, applied when a subscription is saved.

A webhook destination must be ``https://`` (or ``http://`` with
``WEBHOOK_ALLOW_HTTP``), carry no credentials, and point at a public address:
private, loopback, link-local, multicast, reserved and cloud metadata addresses
are refused (server-side request forgery), unless the host is listed in
``WEBHOOK_ALLOWED_HOSTS``. Names are resolved and *every* address is checked;
IPv4 addresses hidden in IPv6 ones (``::ffff:127.0.0.1``, 6to4, NAT64) are
unwrapped first.

:func:`address_problem` and :func:`host_allowed` are the same checks for one
address, reused at delivery time by :mod:`consumers._http` (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import SplitResult, urlsplit

from streams._errors import EventValidationError

__all__ = (
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "address_problem",
    "host_allowed",
    "validate_destination",
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)
"""Cloud instance metadata endpoints: always refused unless explicitly allowed."""

METADATA_HOSTS: Final[frozenset[str]] = frozenset({"metadata.google.internal", "metadata"})
"""Names of metadata endpoints, refused even before they are resolved."""

_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_RESOLVE_TIMEOUT: Final = 10.0
_ALLOW_HINT: Final = "list the host in WEBHOOK_ALLOWED_HOSTS to allow it"


def _translated_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to ``ip`` really reaches (IPv4-mapped, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is no webhook destination (``"a loopback address"``), or ``None`` if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        translated = _translated_ipv4(ip)
        if translated is not None:
            return address_problem(translated)
        if ip.sixtofour is not None:  # 2002::/16 embeds an IPv4 address too
            inner = address_problem(ip.sixtofour)
            if inner is not None:
                return inner
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


def host_allowed(host: str, port: int | None, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` (or ``host:port``) is listed in ``allowed_hosts``, case-insensitively."""
    name = host.strip("[]").rstrip(".").lower()
    if ":" in name:  # IPv6 literal: listed as ::1, [::1] or [::1]:8080
        forms = {name, f"[{name}]"}
        if port is not None:
            forms.add(f"[{name}]:{port}")
    else:
        forms = {name}
        if port is not None:
            forms.add(f"{name}:{port}")
    return any(entry.strip().rstrip(".").lower() in forms for entry in allowed_hosts)


def _ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` is written as, or ``None`` for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _legacy_ipv4(host: str) -> bool:
    """Whether ``host`` is a non-canonical IPv4 form (``127.1``, ``2130706433``, ``0x7f.0.0.1``)."""
    if not host or any(c not in "0123456789abcdefxABCDEFX." for c in host):
        return False
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _parse(url: str, field: str) -> SplitResult:
    text = url.strip()
    if not text:
        raise EventValidationError(field, "is empty; give the https:// URL of the receiver")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text):
        raise EventValidationError(field, f"{url!r} contains spaces or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 — raises ValueError on a bad port
    except ValueError as exc:
        raise EventValidationError(field, f"{url!r} is not a valid URL ({exc})") from None
    return parts


async def _resolve(host: str, port: int, field: str) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise EventValidationError(field, f"{host} does not resolve ({exc})") from None
    except TimeoutError:
        raise EventValidationError(field, f"{host} does not resolve (lookup timed out)") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = _ip_literal(str(sockaddr[0]).split("%", 1)[0])
        if ip is not None and ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise EventValidationError(field, f"{host} does not resolve")
    return addresses


async def validate_destination(
    url: str,
    *,
    allow_http: bool,
    allowed_hosts: Sequence[str],
    field: str = "url",
    resolve: bool = True,
) -> str:
    """Check a destination URL and return it normalised, or raise :class:`EventValidationError`.

    Normalised: scheme and host lower-cased, IDN host in ASCII (punycode), the
    default port and the fragment dropped, an empty path written ``/``.
    ``resolve=False`` skips the DNS lookup of names (IP literals are still checked).
    """
    parts = _parse(url, field)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise EventValidationError(field, f"{url!r} has {shown}; a webhook URL starts with https://")
    if scheme == "http" and not allow_http:
        raise EventValidationError(field, f"{url!r} is plain http; use https, or set WEBHOOK_ALLOW_HTTP=true")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EventValidationError(
            field, "credentials in the URL are not allowed; send them as a custom header instead"
        )
    raw_host = parts.hostname
    if not raw_host:
        raise EventValidationError(field, f"{url!r} has no host")
    try:
        host = raw_host.encode("idna").decode("ascii").lower() if not raw_host.isascii() else raw_host.lower()
    except UnicodeError:
        raise EventValidationError(field, f"{raw_host!r} is not a valid host name") from None
    ip = _ip_literal(host)
    if ip is None and _legacy_ipv4(host):
        raise EventValidationError(field, f"{host} is not a canonical IPv4 address; write it as a.b.c.d")
    if ip is None and (host.rstrip(".") == "" or ".." in host):
        raise EventValidationError(field, f"{raw_host!r} is not a valid host name")

    port = parts.port
    effective_port = port if port is not None else _DEFAULT_PORTS[scheme]
    allowed = host_allowed(host, effective_port, allowed_hosts)

    if not allowed:
        shown_host = f"[{host}]" if ip is not None and ip.version == 6 else host
        if ip is not None:
            problem = address_problem(ip)
            if problem is not None:
                raise EventValidationError(field, f"{shown_host} is {problem}; {_ALLOW_HINT}")
        else:
            if host.rstrip(".") in METADATA_HOSTS:
                raise EventValidationError(field, f"{host} is a cloud metadata address; {_ALLOW_HINT}")
            if resolve:
                for address in await _resolve(host, effective_port, field):
                    problem = address_problem(address)
                    if problem is not None:
                        raise EventValidationError(field, f"{host} resolves to {address}, {problem}; {_ALLOW_HINT}")
    elif ip is None and resolve:
        await _resolve(host, effective_port, field)  # allowed to be private, not to be missing

    netloc = f"[{host}]" if ip is not None and ip.version == 6 else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"
