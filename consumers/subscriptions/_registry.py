"""The subscription mirror: SQL is the source of truth, a NATS KV bucket tells the workers.

The writer of the subscription table (the CLI, the gateway, the recorder when it
auto-disables) puts every change into the bucket; workers watch it, so changes
reach running workers within about a second, across processes, without any
of them reading the database.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from streams import Settings, open_bucket

from .._messages import Subscription

__all__ = ("REGISTRY_BUCKET", "RegistryChange", "SubscriptionRegistry")

REGISTRY_BUCKET: Final = "turbohooks_subscriptions"

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Subscription)


class RegistryChange(msgspec.Struct, frozen=True):
    """One change seen by a watcher: a subscription put, or the id of one deleted.

    ``initial_done`` marks the end of the initial state (every subscription that
    existed when the watch started has been seen).
    """

    subscription: Subscription | None = None
    deleted: uuid.UUID | None = None
    initial_done: bool = False


class SubscriptionRegistry:
    """The KV bucket mirroring ``webhook_subscriptions``."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, settings: Settings) -> SubscriptionRegistry:
        """Open the bucket, creating it when missing."""
        kv = await open_bucket(
            js, settings, REGISTRY_BUCKET, "turbohooks: subscriptions, mirrored from SQL for the workers"
        )
        return cls(kv)

    async def put(self, subscription: Subscription) -> None:
        """Publish the current state of one subscription."""
        await self._kv.put(subscription.id.hex, _encoder.encode(subscription))

    async def delete(self, subscription_id: uuid.UUID) -> None:
        """Tell the workers a subscription is gone."""
        with contextlib.suppress(KeyNotFoundError, KeyDeletedError):
            await self._kv.delete(subscription_id.hex)

    async def get(self, subscription_id: uuid.UUID) -> Subscription | None:
        """The mirrored state of one subscription, if any."""
        try:
            entry = await self._kv.get(subscription_id.hex)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        return _decoder.decode(entry.value) if entry.value else None

    async def sync(self, subscriptions: Iterable[Subscription]) -> None:
        """Make the bucket equal to ``subscriptions`` (the SQL table): on start, after a restore."""
        wanted = {s.id.hex: s for s in subscriptions}
        try:
            present = set(await self._kv.keys())
        except NoKeysError:
            present = set()
        for key in present - wanted.keys():
            await self._kv.delete(key)
        for key, subscription in wanted.items():
            current = await self.get(subscription.id) if key in present else None
            if current is None or _encoder.encode(current) != _encoder.encode(subscription):
                await self.put(subscription)

    async def watch(self) -> AsyncIterator[RegistryChange]:
        """Every subscription now, then ``initial_done``, then each change as it happens."""
        watcher = await self._kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    yield RegistryChange(initial_done=True)
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    yield RegistryChange(deleted=uuid.UUID(hex=entry.key))
                    continue
                yield RegistryChange(subscription=_decoder.decode(entry.value))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
