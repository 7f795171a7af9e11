"""Connecting: NATS_URL may name every node of a cluster, comma-separated."""

from __future__ import annotations

import socket

import msgspec

from streams import Settings, connect_nats


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nats_url_with_several_servers_connects_to_one_that_answers(settings: Settings) -> None:
    """nats-py wants a list: the comma-joined string was refused as one URL ("invalid connect url option")."""
    urls = f"nats://127.0.0.1:{_closed_port()},{settings.resolved_nats_url()}"
    nc = await connect_nats(msgspec.structs.replace(settings, nats_url=urls))
    try:
        assert nc.is_connected
        assert nc.connected_url is not None and nc.connected_url.port == int(
            settings.resolved_nats_url().rsplit(":", 1)[1]
        )
    finally:
        await nc.close()
