"""NATS least privilege, against a real nats-server run with the generated embedded configuration.

Each role does its job with its own generated credentials, and is refused what
it should not do: a refused publish never reaches JetStream (the request times
out) and the server logs a permissions violation naming the user and subject.
"""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api as js_api
from nats.js.errors import KeyNotFoundError

from consumers.engine import Lease
from streams import (
    ATTEMPTS_STREAM,
    NATS_ROLES,
    RECORDER_CONSUMER,
    REDELIVER_STREAM,
    EmbeddedNats,
    NatsUnavailableError,
    Settings,
    connect_nats,
    embedded_config,
    provision,
)
from streams._auth import SUBSCRIPTIONS_BUCKET, credentials_path, render_authorization, user_name
from streams._heartbeat import heartbeat, process_key, silent_processes
from streams._kv import open_bucket
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
DENIED_WAIT = 1.0


@dataclass
class Secured:
    server: EmbeddedNats
    settings: Settings
    log: Path

    async def connect(self, role: str) -> NATS:
        return await connect_nats(self.settings, name=f"test-{role}", role=role)

    async def violation(self, role: str, subject: str) -> None:
        """The server logged a permissions violation of ``role``'s user for ``subject``."""
        needle = f'user:{user_name(role)}"'
        for _ in range(40):
            for line in self.log.read_text(encoding="utf-8").splitlines():
                if "Violation" in line and needle in line and subject in line:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no permissions violation logged for {role} on {subject}")


@pytest.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    data = tmp_path_factory.mktemp("auth-data")
    settings = Settings(data_dir=data, publish_timeout=2.0, stream_max_bytes=1 << 28)
    log = data / "nats-server.log"
    config = embedded_config(settings, base=ROOT / "nats" / "test.conf")
    async with EmbeddedNats(store_dir=data / "jetstream", config=config, log_file=log) as server:
        assert server.port is not None
        secured = Secured(server, msgspec.structs.replace(settings, nats_port=server.port), log)
        admin = await secured.connect("gateway")
        js = admin.jetstream()
        await provision(js, secured.settings)
        await open_bucket(js, secured.settings, SUBSCRIPTIONS_BUCKET, "test registry")
        await admin.close()
        yield secured


@pytest.fixture
async def admin(secured: Secured) -> AsyncIterator[NATS]:
    nc = await secured.connect("gateway")
    yield nc
    await nc.close()


async def _denied(call: Awaitable[object]) -> None:
    # Allowed calls wait up to 10 s (a loaded machine); a refused one never gets an answer.
    with pytest.raises((NatsTimeoutError, TimeoutError)):
        await asyncio.wait_for(call, DENIED_WAIT + 2)


def _consumer(name: str, *subjects: str) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=name,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.NEW,
        filter_subjects=list(subjects),
    )


# -- the generated files ----------------------------------------------------------


def test_credentials_are_private_and_stable(secured: Secured) -> None:
    path = credentials_path(secured.settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = path.parent / "server.conf"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    before = json.loads(path.read_text())
    assert sorted(before) == sorted(NATS_ROLES) and len(set(before.values())) == len(NATS_ROLES)
    embedded_config(secured.settings, base=ROOT / "nats" / "test.conf")  # a restart keeps the passwords
    assert json.loads(path.read_text()) == before


def test_shipped_auth_conf_is_the_rendered_block() -> None:
    """nats/auth.conf (for an external server; passwords from the environment) is what the code renders."""
    assert (ROOT / "nats" / "auth.conf").read_text(encoding="utf-8") == render_authorization(Settings())


async def test_wrong_password_is_refused_clearly(secured: Secured) -> None:
    settings = Settings(
        nats_url=secured.server.url,
        nats_user=user_name("worker"),
        nats_password="not-it",
        data_dir=secured.settings.data_dir,
    )
    with pytest.raises(NatsUnavailableError, match="refused the credentials"):
        await connect_nats(settings, role="worker", timeout=2.0)


async def test_no_credentials_is_refused(secured: Secured) -> None:
    with pytest.raises(NatsUnavailableError):
        await connect_nats(Settings(nats_url=secured.server.url), timeout=2.0)


# -- each role does its job and nothing else -----------------------------------------


async def test_publisher_publishes_events_only(secured: Secured, admin: NATS) -> None:
    nc = await secured.connect("publisher")
    try:
        js = nc.jetstream(timeout=10)
        ack = await js.publish("turbo.issue.created", b"{}", headers={"Nats-Msg-Id": uuid.uuid4().hex})
        assert ack.stream == "TURBO_EVENTS"
        await provision(js, secured.settings)  # the CLI's start-up check: read-only when all is there
        await _denied(js.key_value(SUBSCRIPTIONS_BUCKET))
        await secured.violation("publisher", f"$JS.API.STREAM.INFO.KV_{SUBSCRIPTIONS_BUCKET}")
        await _denied(nc.request(f"$KV.{SUBSCRIPTIONS_BUCKET}.x", b"{}", timeout=DENIED_WAIT))
        await _denied(nc.request("$JS.API.CONSUMER.MSG.NEXT.TURBO_EVENTS.webhook_x", b"1", timeout=DENIED_WAIT))
        await secured.violation("publisher", "$JS.API.CONSUMER.MSG.NEXT.TURBO_EVENTS")
        await _denied(js.publish("turbohooks.attempts.x", b"{}"))
        # Nor may it read another role's replies.
        await nc.subscribe("_INBOX_gateway.>")
        await secured.violation("publisher", "_INBOX_gateway.>")
    finally:
        await nc.close()


async def test_worker_pulls_acks_reads_the_registry_and_publishes_outcomes(secured: Secured, admin: NATS) -> None:
    # What the gateway does: a subscription in the registry.
    admin_kv = await admin.jetstream().key_value(SUBSCRIPTIONS_BUCKET)
    key = uuid.uuid4().hex
    await admin_kv.put(key, b'{"secret": "whsec_x"}')
    nc = await secured.connect("worker")
    try:
        js = nc.jetstream(timeout=10)
        await provision(js, secured.settings)
        kv = await open_bucket(js, secured.settings, SUBSCRIPTIONS_BUCKET, "test registry")
        assert (await kv.get(key)).value == b'{"secret": "whsec_x"}'
        assert key in await kv.keys()  # the registry's watch: an ordered consumer on the bucket
        # Its subscription's consumer, pulled and acked.
        durable = f"webhook_{uuid.uuid4().hex}"
        await js.add_consumer("TURBO_EVENTS", _consumer(durable, "turbo.issue.created", "turbo.issue.updated"))
        await admin.jetstream().publish("turbo.issue.created", b'{"n": 1}')
        psub = await js.pull_subscribe_bind(durable=durable, stream="TURBO_EVENTS")
        (msg,) = await psub.fetch(1, timeout=5)
        await msg.ack_sync(timeout=5)
        # An entity-ordered subscription: its lease (the bucket made on first use), its consumer's info.
        lease = await Lease.open(js, secured.settings, f"order.{uuid.uuid4().hex}")
        assert await lease.acquire() and await lease.renew()
        await lease.release()
        assert (await js.consumer_info("TURBO_EVENTS", durable)).num_ack_pending == 0
        # The redelivery queue of one integration kind.
        redeliver = js_api.ConsumerConfig(
            durable_name="redeliver_webhook",
            filter_subject="turbohooks.redeliver.webhook.>",
            ack_policy=js_api.AckPolicy.EXPLICIT,
        )
        await js.add_consumer(REDELIVER_STREAM, redeliver)
        await admin.jetstream().publish("turbohooks.redeliver.webhook.1", b"{}")
        (queued,) = await (await js.pull_subscribe_bind(durable="redeliver_webhook", stream=REDELIVER_STREAM)).fetch(
            1, 5
        )
        await queued.ack_sync(timeout=5)
        await js.publish("turbohooks.attempts.webhook.1", b"{}")
        await js.publish("turbohooks.dlq.webhook.1", b"{}")
        # Refused: writing the registry, publishing events, deleting streams, the recorder's consumer.
        await _denied(kv.put(key, b'{"secret": "mine"}'))
        await secured.violation("worker", f"$KV.{SUBSCRIPTIONS_BUCKET}.{key}")
        await _denied(js.publish("turbo.issue.created", b"{}"))
        await secured.violation("worker", '"turbo.issue.created"')
        await _denied(js.delete_stream("TURBO_EVENTS"))
        await _denied(js.delete_consumer("TURBO_EVENTS", durable))
        await _denied(nc.request(f"$JS.API.CONSUMER.MSG.NEXT.{ATTEMPTS_STREAM}.{RECORDER_CONSUMER}", b"1"))
    finally:
        await nc.close()


async def test_worker_creates_and_keeps_the_rate_limit_bucket(secured: Secured, admin: NATS) -> None:
    """Rate limits and receivers' pauses: a worker creates the throttle bucket, claims slots, shares a pause."""
    from consumers import RateLimit
    from consumers.engine import THROTTLE_BUCKET, Throttles

    nc = await secured.connect("worker")
    try:
        throttles = Throttles(secured.settings, nc.jetstream(timeout=10), keepalive_every=1.0)
        sub_id = uuid.uuid4()
        throttle = throttles.open(sub_id, RateLimit(count=50))
        await asyncio.wait_for(throttle.acquire(), 5)
        await asyncio.wait_for(throttle.acquire(), 5)
        throttle.observe(429, 1.0, cap=60.0)
        kv = await admin.jetstream().key_value(THROTTLE_BUCKET)

        async def shared() -> bool:
            try:
                return b"paused_until" in ((await kv.get(f"state.{sub_id.hex}")).value or b"")
            except KeyNotFoundError:
                return False

        await wait_for(shared, timeout=5, what="the pause in the bucket")
        assert (await kv.get(f"slots.{sub_id.hex}")).value
        await throttles.close()
    finally:
        await nc.close()
    publisher = await secured.connect("publisher")
    try:
        await _denied(publisher.jetstream().publish(f"$KV.{THROTTLE_BUCKET}.state.x", b"{}"))
    finally:
        await publisher.close()


async def test_recorder_consumes_attempts_and_writes_the_registry(secured: Secured, admin: NATS) -> None:
    nc = await secured.connect("recorder")
    try:
        js = nc.jetstream(timeout=10)
        await provision(js, secured.settings)
        from streams import recorder_consumer_config

        await js.add_consumer(ATTEMPTS_STREAM, recorder_consumer_config())
        psub = await js.pull_subscribe_bind(durable=RECORDER_CONSUMER, stream=ATTEMPTS_STREAM)
        worker = await secured.connect("worker")
        await worker.jetstream().publish("turbohooks.attempts.webhook.2", b'{"attempt": 2}')
        await worker.close()
        msgs = await psub.fetch(16, timeout=5)
        assert b'{"attempt": 2}' in [m.data for m in msgs]
        await msgs[-1].ack_sync(timeout=5)
        kv = await js.key_value(SUBSCRIPTIONS_BUCKET)
        await kv.put(uuid.uuid4().hex, b'{"status": "disabled"}')  # auto-disable
        await js.publish("turbo.system.health_check_failed", b"{}")
        await _denied(js.publish("turbo.issue.created", b"{}"))
        await _denied(js.delete_stream(ATTEMPTS_STREAM))
        await secured.violation("recorder", f"$JS.API.STREAM.DELETE.{ATTEMPTS_STREAM}")
    finally:
        await nc.close()


async def test_scheduler_follows_the_stream_and_keeps_its_buckets(secured: Secured, admin: NATS) -> None:
    nc = await secured.connect("scheduler")
    try:
        js = nc.jetstream(timeout=10)
        await provision(js, secured.settings)
        ack = await js.publish("turbo.issue.created", b'{"due": 1}')
        kv = await open_bucket(js, secured.settings, "turbohooks_scheduler", "test scheduler")
        await kv.put("last", b"1")
        assert (await kv.get("last")).value == b"1"
        config = js_api.ConsumerConfig(
            filter_subjects=["turbo.issue.created"],
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=ack.seq,
            ack_policy=js_api.AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        psub = await js.pull_subscribe("turbo.issue.created", stream="TURBO_EVENTS", config=config)
        (msg,) = await psub.fetch(1, timeout=5)
        assert msg.data == b'{"due": 1}'
        assert (await js.get_msg("TURBO_EVENTS", ack.seq)).data == b'{"due": 1}'
        await _denied(js.key_value(SUBSCRIPTIONS_BUCKET))
        await _denied(js.delete_stream("TURBO_EVENTS"))
    finally:
        await nc.close()


async def test_tail_reads_and_cannot_publish(secured: Secured, admin: NATS) -> None:
    nc = await secured.connect("tail")
    try:
        js = nc.jetstream(timeout=10)
        ack = await admin.jetstream().publish("turbo.project.created", b'{"tail": 1}')
        info = await js.stream_info("TURBO_EVENTS")
        assert info.state.last_seq >= ack.seq
        sub = await js.subscribe(
            "turbo.project.created",
            stream="TURBO_EVENTS",
            ordered_consumer=True,
            config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=ack.seq),
        )
        msg = await sub.next_msg(timeout=5)
        assert msg.data == b'{"tail": 1}'
        await sub.unsubscribe()
        await js.consumers_info("TURBO_EVENTS")  # `turbohooks streams`
        await _denied(js.publish("turbo.project.created", b"{}"))
        await secured.violation("tail", '"turbo.project.created"')
        await _denied(js.add_consumer("TURBO_EVENTS", _consumer("tail_durable", "turbo.>")))
        await _denied(js.key_value(SUBSCRIPTIONS_BUCKET))
    finally:
        await nc.close()


@pytest.mark.parametrize("role", [r for r in NATS_ROLES if r != "gateway"])
async def test_only_the_admin_deletes_streams(secured: Secured, role: str) -> None:
    nc = await secured.connect(role)
    try:
        await _denied(nc.request("$JS.API.STREAM.DELETE.TURBO_EVENTS", b"", timeout=DENIED_WAIT))
        await secured.violation(role, "$JS.API.STREAM.DELETE.TURBO_EVENTS")
        await _denied(nc.request("$JS.API.STREAM.PURGE.TURBO_EVENTS", b"", timeout=DENIED_WAIT))
    finally:
        await nc.close()
    admin = await secured.connect("gateway")
    try:
        assert (await admin.jetstream().stream_info("TURBO_EVENTS")).config.name == "TURBO_EVENTS"
    finally:
        await admin.close()


async def test_the_admin_creates_and_deletes_streams(secured: Secured, admin: NATS) -> None:
    js = admin.jetstream()
    name = f"SCRATCH_{uuid.uuid4().hex[:8]}"
    await js.add_stream(js_api.StreamConfig(name=name, subjects=[f"scratch.{name}.>"]))
    assert await js.delete_stream(name)


async def test_the_long_running_roles_keep_their_heartbeat(secured: Secured) -> None:
    """Worker, recorder and scheduler each put (the first creating the bucket) and delete their heartbeat."""
    for role in ("worker", "recorder", "scheduler"):
        nc = await secured.connect(role)
        try:
            js = nc.jetstream(timeout=10)
            stop = asyncio.Event()
            beating = asyncio.create_task(heartbeat(js, secured.settings, role, stop, every=0.1))
            await asyncio.sleep(0.3)
            assert process_key(role) in await silent_processes(js, secured.settings, -1.0), role
            stop.set()
            await beating
            assert process_key(role) not in await silent_processes(js, secured.settings, -1.0), role
        finally:
            await nc.close()
