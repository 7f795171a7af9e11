"""The destination rules applied to the address actually dialled (server-side request forgery, DNS rebinding).

A name checked when a subscription is saved may resolve elsewhere when a
request is sent (DNS rebinding: a short TTL, then a private address). The HTTP
clients therefore resolve each name once per new connection through a hook
(aiohttp's resolver, httpx's network backend), keep only the addresses these
rules allow, and connect to those: the check and the connection use the same
answer, and nothing caches a verdict beyond it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from ._urls import address_problem, host_allowed

__all__ = ("BlockedAddressError", "dial_problem", "usable_addresses")


class BlockedAddressError(OSError):
    """Every address a name resolved to is one deliveries may not reach."""


def dial_problem(host: str, port: int | None, address: str, allowed_hosts: Iterable[str]) -> str | None:
    """Why ``address`` (what ``host`` resolved to) may not be dialled, or ``None``; listed hosts are exempt."""
    if host_allowed(host, port, allowed_hosts):
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    return address_problem(ip)


def usable_addresses(host: str, port: int | None, addresses: Sequence[str], allowed_hosts: Iterable[str]) -> list[str]:
    """The addresses of ``addresses`` that may be dialled, in order; :class:`BlockedAddressError` when none."""
    allowed = tuple(allowed_hosts)
    usable: list[str] = []
    refused: list[str] = []
    for address in addresses:
        problem = dial_problem(host, port, address, allowed)
        if problem is None:
            usable.append(address)
        else:
            refused.append(f"{address}, {problem}")
    if not usable:
        shown = "; ".join(refused) or "no address"
        raise BlockedAddressError(f"{host} resolves to {shown}")
    return usable
