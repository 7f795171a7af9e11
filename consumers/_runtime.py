"""The engine's resources, opened together: NATS, the streams, the database, the stores, the service.

The CLI commands, ``turbohooks up`` and the gateway all start from here, so
that each owns its resources through one async context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from publishers import EventPublisher
from streams import Settings, connect_nats, provision

from .log import AuditStore, Database, DeliveryStore, SubscriptionStore
from .secrets import Keyring
from .subscriptions import SubscriptionRegistry, SubscriptionService

__all__ = ("Engine", "open_engine")


@dataclass(frozen=True, slots=True)
class Engine:
    """Everything a process needs to manage subscriptions and read the delivery log."""

    settings: Settings
    nc: NATS
    js: JetStreamContext
    db: Database
    subscriptions: SubscriptionStore
    deliveries: DeliveryStore
    registry: SubscriptionRegistry
    service: SubscriptionService
    publisher: EventPublisher
    audit: AuditStore | None = None
    """The audit log of admin actions (the service and the operations record into it)."""


@contextlib.asynccontextmanager
async def open_engine(
    settings: Settings, *, name: str = "engine", nc: NATS | None = None, role: str = "gateway"
) -> AsyncIterator[Engine]:
    """Connect as ``role`` (unless ``nc`` is given), provision the streams, migrate the database, open the stores."""
    async with contextlib.AsyncExitStack() as stack:
        if nc is None:
            nc = await connect_nats(settings, name=f"turbohooks-{name}", role=role)
            stack.push_async_callback(nc.close)
        js = nc.jetstream(timeout=settings.publish_timeout)
        await provision(js, settings)
        db = await stack.enter_async_context(Database(settings.resolved_database_url()))
        publisher = await stack.enter_async_context(EventPublisher(settings, nc=nc, name=name))
        keyring = Keyring.from_settings(settings)
        registry = await SubscriptionRegistry.open(js, settings, keyring)
        subscriptions = SubscriptionStore(db, keyring)
        # Secrets stored in clear by an earlier release (or under a retired key) are encrypted now.
        await subscriptions.reseal()
        audit = AuditStore(db)
        service = SubscriptionService(settings, subscriptions, registry, js, publisher, audit=audit)
        yield Engine(
            settings=settings,
            nc=nc,
            js=js,
            db=db,
            subscriptions=subscriptions,
            deliveries=DeliveryStore(db),
            registry=registry,
            service=service,
            publisher=publisher,
            audit=audit,
        )
