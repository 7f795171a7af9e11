"""The GitHub client's connections, checked on the address dialled (httpx's equivalent of the resolver hook).

httpx has no resolver hook; httpcore, under it, takes a *network backend*
that opens every TCP connection. :class:`GuardedBackend` resolves the name
itself (once per connection, no cache), keeps the addresses the destination
rules allow (:func:`integrations.core.usable_addresses`) and connects to the
first that answers. TLS is still negotiated by httpcore with the *name*
(SNI and certificate verification), so only the address changed hands.
:class:`GuardedTransport` is ``httpx.AsyncHTTPTransport`` over such a backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

import httpcore
import httpx

from ..core import BlockedAddressError, usable_addresses

__all__ = ("GuardedBackend", "GuardedTransport", "Resolve")

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""Resolves ``(host, port)`` to addresses (tests inject their own)."""
_RESOLVE_TIMEOUT: Final = 10.0


async def _system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(_RESOLVE_TIMEOUT):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the destination rules allow (``allowed_hosts`` exempt)."""

    def __init__(
        self,
        allowed_hosts: Sequence[str] = (),
        *,
        resolve: Resolve | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allowed = tuple(allowed_hosts)
        self._resolve = resolve or _system_resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.strip("[]")
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
            addresses = [name]
        except ValueError:
            try:
                addresses = await self._resolve(name, port)
            except (OSError, UnicodeError, TimeoutError) as exc:
                raise httpcore.ConnectError(f"dns lookup failed for {name}: {exc}") from None
        try:
            usable = usable_addresses(name, port, addresses, self._allowed)
        except BlockedAddressError as exc:
            raise httpcore.ConnectError(f"blocked: {exc}") from None
        failure: Exception | None = None
        for address in usable:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are no destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose pool dials through a :class:`GuardedBackend` (no proxy, no env)."""

    def __init__(self, backend: GuardedBackend, *, limits: httpx.Limits | None = None) -> None:
        chosen = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(trust_env=False, limits=chosen)
        # The pool httpx built, rebuilt over the guarded backend: httpx takes no backend of its own.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=chosen.max_connections,
            max_keepalive_connections=chosen.max_keepalive_connections,
            keepalive_expiry=chosen.keepalive_expiry,
            network_backend=backend,
        )
