"""Server-side request forgery at the connection: the address dialled is the address checked.

A name that resolves to a public address when a subscription is saved and to a
private one when it is sent (DNS rebinding) reaches nothing, for webhooks (aiohttp's
resolver hook) and for GitHub's API URL (httpx, through the guarded network backend);
no answer is cached past itself. The DNS is a fake answering for one test name,
injected as the event loop's ``getaddrinfo`` (which aiohttp's resolver, anyio and
the destination check all call); every other name resolves as usual.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest
from aiohttp import web

from consumers import SubscriptionCreate, delivery_id_for
from consumers.engine._http import DeliveryClient
from integrations import INTEGRATIONS, TransportContext
from integrations.github import github_transport
from streams import EventValidationError, build_event, encode_event
from tests.support import Receiver, Running, wait_for

from .fakes import FakeGitHub

PUBLIC = "93.184.215.14"
PRIVATE = "127.0.0.1"


class FakeDns:
    """Answers for ``name``: ``answers[n]`` at the n-th lookup, the last one from then on (TTL 0)."""

    def __init__(self, name: str, answers: list[str]) -> None:
        self.name = name
        self.answers = answers
        self.lookups = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            text = host.decode() if isinstance(host, bytes) else host
            if text != self.name:
                return await real(host, port, *args, **kwargs)
            address = self.answers[min(self.lookups, len(self.answers) - 1)]
            self.lookups += 1
            number = int(port) if port not in (None, b"", "") else 0
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, number))]

        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


@pytest.fixture
async def rebinding(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """``rebind-<hex>.turbohooks.test``: public at the first lookup (the save), private afterwards."""
    dns = FakeDns(f"rebind-{uuid.uuid4().hex[:8]}.turbohooks.test", [PUBLIC, PRIVATE])
    dns.install(monkeypatch)
    return dns


async def test_github_api_url_at_a_metadata_address_is_refused_at_save(running: Running, unique: str) -> None:
    for api_url in ("http://169.254.169.254", "http://[::ffff:169.254.169.254]/api/v3", "https://metadata/api"):
        with pytest.raises(EventValidationError) as refused:
            await running.engine.service.create(
                SubscriptionCreate(
                    name=f"gh-{unique}",
                    url="https://github.com/octo/turbo",
                    event_types=["issue.*"],
                    integration="github",
                    integration_config={"repository": "octo/turbo", "api_url": api_url},
                )
            )
        assert refused.value.field == "integration_config.api_url"
    assert await running.engine.subscriptions.count() == 0


async def test_github_api_url_public_at_save_private_at_send_reaches_nothing(
    running: Running, github: FakeGitHub, rebinding: FakeDns, unique: str
) -> None:
    port = int(github.url.rsplit(":", 1)[1])
    config = {"repository": "octo/turbo", "token": "ghp_test", "api_url": f"http://{rebinding.name}:{port}"}
    sub = await running.engine.service.create(
        SubscriptionCreate(
            name=f"gh-{unique}",
            url="https://github.com/octo/turbo",
            event_types=["issue.*"],
            integration="github",
            integration_config=config,
        )
    )
    assert rebinding.lookups == 1, "the save checked the name's addresses"
    integration = INTEGRATIONS["github"]
    event = build_event(event_type="issue.created", entity_id=unique, data={"current": {"title": "T"}})
    request = integration.render(event, encode_event(event), sub.url, sub.integration_config)
    assert request is not None
    async with github_transport(
        TransportContext(settings=running.engine.settings, js=running.engine.js, timeout=5.0)
    ) as t:
        result = await t.send(request, event, sub.url, sub.integration_config)
        again = await t.send(request, event, sub.url, sub.integration_config)
    assert github.calls == [], "no request reached the private address"
    for sent in (result, again):
        assert sent.status is None and sent.error_kind == "connect"
        assert sent.error is not None and "blocked" in sent.error and "loopback" in sent.error
    assert rebinding.lookups == 3, "each connection resolved the name itself"


async def test_a_webhook_public_at_save_private_at_send_reaches_nothing(
    running: Running, receiver: Receiver, rebinding: FakeDns, unique: str
) -> None:
    port = int(receiver.url.rsplit(":", 1)[1])
    sub = await running.subscribe(
        name=f"wh-{unique}", url=f"http://{rebinding.name}:{port}/hook", event_types=["issue.*"], retry_schedule=[]
    )
    assert rebinding.lookups == 1
    event = build_event(event_type="issue.created", entity_id=unique, data={"current": {"title": "T"}})
    await running.engine.publisher.publish(event)

    async def failed() -> bool:
        try:
            detail = await running.engine.deliveries.get(delivery_id_for(sub.id, event.event_id))
        except KeyError:
            return False
        return detail.status == "failed"

    await wait_for(failed, what="the delivery to fail")
    detail = await running.engine.deliveries.get(delivery_id_for(sub.id, event.event_id))
    error = detail.attempt_log[-1].error or ""
    assert "blocked" in error and "loopback" in error
    assert receiver.received == []


async def test_the_delivery_client_resolves_each_new_connection_without_a_cache(rebinding: FakeDns) -> None:
    """A DNS cache would keep dialling an answer after its TTL (aiohttp's default: 10 s, ours was 60 s)."""

    async def close_each(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/", close_each)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, PRIVATE, 0).start()
    port = runner.addresses[0][1]
    rebinding.answers = [PRIVATE]
    try:
        async with DeliveryClient(
            timeout=5.0, response_body_cap=100, user_agent="t", guard_addresses=True, allowed_hosts=(rebinding.name,)
        ) as client:
            for _ in range(3):
                assert (await client.post(f"http://{rebinding.name}:{port}/", b"{}", {})).status == 200
        assert rebinding.lookups == 3
    finally:
        await runner.cleanup()
