"""TLS to receivers: certificates always verified, a subscription's CA bundle, mutual TLS with a client certificate.

Real https receivers (aiohttp with an SSL context) on 127.0.0.1, certificates
made in the test with ``cryptography``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from consumers.engine._http import DeliveryClient
from integrations.core import ClientTls, tls_problem
from tests._tls_certs import Authority, Issued, self_signed, server_context

HOST = "127.0.0.1"


@dataclass
class HttpsReceiver:
    url: str
    peers: list[str]


async def _serve(context: ssl.SSLContext) -> AsyncIterator[HttpsReceiver]:
    peers: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        peers.append(str(subject.get("commonName", "")))
        return web.Response(text="hello over tls")

    app = web.Application()
    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield HttpsReceiver(f"https://{HOST}:{port}/hook", peers)
    finally:
        await runner.cleanup()


@dataclass
class Pki:
    ca: Authority
    client: Issued
    server: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = Authority()
    return Pki(ca, ca.issue("turbohooks-worker", server=False), ca.issue("receiver.test", server=True, ip=HOST))


@pytest.fixture
async def mtls_receiver(pki: Pki, tmp_path: Path) -> AsyncIterator[HttpsReceiver]:
    """Presents a certificate of the test CA; requires a client certificate of the same CA."""
    async for receiver in _serve(server_context(tmp_path, pki.server, client_ca=pki.ca.pem)):
        yield receiver


@pytest.fixture
async def self_signed_receiver(tmp_path: Path) -> AsyncIterator[tuple[HttpsReceiver, str]]:
    issued, ca_pem = self_signed("self-signed.test", HOST)
    async for receiver in _serve(server_context(tmp_path, issued)):
        yield receiver, ca_pem


@pytest.fixture
async def client() -> AsyncIterator[DeliveryClient]:
    async with DeliveryClient(
        timeout=5.0, response_body_cap=1024, user_agent="t/1", guard_addresses=True, allowed_hosts=(HOST,)
    ) as c:
        yield c


async def test_a_self_signed_receiver_is_refused_unless_its_ca_is_given(
    self_signed_receiver: tuple[HttpsReceiver, str], client: DeliveryClient
) -> None:
    receiver, ca_pem = self_signed_receiver
    refused = await client.post(receiver.url, b"{}", {})
    assert refused.status is None
    assert refused.error_kind == "connect"
    assert refused.error is not None and "certificate" in refused.error
    trusted = await client.post(receiver.url, b"{}", {}, tls=ClientTls(ca_bundle=ca_pem))
    assert (trusted.status, trusted.body, trusted.error) == (200, "hello over tls", None)
    # Another CA is no trust: the bundle replaces the system's CAs, it does not switch checks off.
    other = await client.post(receiver.url, b"{}", {}, tls=ClientTls(ca_bundle=Authority("other").pem))
    assert other.status is None and other.error is not None and "certificate" in other.error


async def test_a_receiver_requiring_a_client_certificate_accepts_only_with_one(
    pki: Pki, mtls_receiver: HttpsReceiver, client: DeliveryClient
) -> None:
    without = await client.post(mtls_receiver.url, b"{}", {}, tls=ClientTls(ca_bundle=pki.ca.pem))
    assert without.status is None
    assert without.error_kind in {"connect", "protocol"}
    assert mtls_receiver.peers == []
    tls = ClientTls(client_cert=pki.client.cert, client_key=pki.client.key, ca_bundle=pki.ca.pem)
    accepted = await client.post(mtls_receiver.url, b"{}", {}, tls=tls)
    assert (accepted.status, accepted.error) == (200, None)
    assert mtls_receiver.peers == ["turbohooks-worker"]
    # The context is built once per content and reused (connections pool by context).
    again = await client.post(
        mtls_receiver.url, b"{}", {}, tls=ClientTls(**{f: getattr(tls, f) for f in tls.__struct_fields__})
    )
    assert again.status == 200
    assert len(client._contexts) == 2


async def test_a_client_certificate_of_another_ca_is_refused_by_the_receiver(
    pki: Pki, mtls_receiver: HttpsReceiver, client: DeliveryClient
) -> None:
    stranger = Authority("stranger").issue("intruder", server=False)
    result = await client.post(
        mtls_receiver.url,
        b"{}",
        {},
        tls=ClientTls(client_cert=stranger.cert, client_key=stranger.key, ca_bundle=pki.ca.pem),
    )
    assert result.status is None
    assert mtls_receiver.peers == []


def test_tls_options_are_checked_before_they_are_saved(pki: Pki) -> None:
    other = Authority("other").issue("x", server=False)
    assert tls_problem(ClientTls(client_cert=pki.client.cert, client_key=pki.client.key, ca_bundle=pki.ca.pem)) is None
    assert tls_problem(ClientTls(client_cert=pki.client.cert))[0] == "tls_client_key"  # type: ignore[index]
    assert tls_problem(ClientTls(client_key=pki.client.key))[0] == "tls_client_cert"  # type: ignore[index]
    mismatch = tls_problem(ClientTls(client_cert=pki.client.cert, client_key=other.key))
    assert mismatch is not None and mismatch[0] == "tls_client_key" and "does not belong" in mismatch[1]
    assert tls_problem(ClientTls(ca_bundle="not a pem")) == (
        "tls_ca_bundle",
        "is not a PEM bundle of certificates (-----BEGIN CERTIFICATE-----)",
    )
    bad_key = tls_problem(ClientTls(client_cert=pki.client.cert, client_key="-----BEGIN PRIVATE KEY-----\nAAAA\n"))
    assert bad_key is not None and bad_key[0] == "tls_client_key"
