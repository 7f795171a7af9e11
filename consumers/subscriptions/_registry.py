"""The subscription mirror: SQL is the source of truth, a NATS KV bucket tells the workers.

The writer of the subscription table (the CLI, the gateway, the recorder when it
auto-disables) puts every change into the bucket; workers watch it, so changes
reach running workers within about a second, across processes, without any
of them reading the database.

Secrets travel sealed (``consumers.secrets``): a NATS client that can read the
bucket reads no signing secret, header value or credential; the workers decrypt
with the key they share with the writers (the data dir's key file, or
``TURBOHOOKS_SECRET_KEY``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from streams import Settings, open_bucket

from .._messages import Subscription
from ..secrets import Keyring, SecretKeyError, is_stale, seal, unseal

__all__ = ("REGISTRY_BUCKET", "RegistryChange", "SubscriptionRegistry")

REGISTRY_BUCKET: Final = "turbohooks_subscriptions"

_log = logging.getLogger(__name__)
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

    def __init__(self, kv: KeyValue, keyring: Keyring | None = None) -> None:
        self._kv = kv
        self.keyring = keyring or Keyring.ephemeral()

    @classmethod
    async def open(
        cls, js: JetStreamContext, settings: Settings, keyring: Keyring | None = None
    ) -> SubscriptionRegistry:
        """Open the bucket, creating it when missing; secrets sealed under ``keyring`` (default: the settings')."""
        kv = await open_bucket(
            js, settings, REGISTRY_BUCKET, "turbohooks: subscriptions, mirrored from SQL for the workers"
        )
        return cls(kv, keyring or Keyring.from_settings(settings))

    async def put(self, subscription: Subscription) -> None:
        """Publish the current state of one subscription (its secrets sealed)."""
        await self._kv.put(subscription.id.hex, self._encode(subscription))

    def _encode(self, subscription: Subscription) -> bytes:
        return _encoder.encode(seal(subscription, self.keyring))

    def _decode(self, value: bytes) -> Subscription:
        return unseal(_decoder.decode(value), self.keyring)

    async def reseal(self) -> int:
        """Re-encrypt under the current key every entry that is not (clear, or an older key); how many.

        Each entry is rewritten only if unchanged since read (compare-and-set on its
        revision): a concurrent put by a writer wins, and is sealed under the current key already.
        """
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return 0
        rewritten = 0
        for key in keys:
            for _ in range(5):
                try:
                    entry = await self._kv.get(key)
                except (KeyNotFoundError, KeyDeletedError):
                    break
                if not entry.value or not is_stale(_decoder.decode(entry.value), self.keyring):
                    break
                try:
                    await self._kv.update(key, self._encode(self._decode(entry.value)), last=entry.revision)
                except KeyWrongLastSequenceError:
                    continue
                rewritten += 1
                break
        return rewritten

    async def stale_count(self) -> int:
        """How many entries hold a secret in clear or not under the current key."""
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return 0
        stale = 0
        for key in keys:
            with contextlib.suppress(KeyNotFoundError, KeyDeletedError):
                entry = await self._kv.get(key)
                if entry.value and is_stale(_decoder.decode(entry.value), self.keyring):
                    stale += 1
        return stale

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
        return self._decode(entry.value) if entry.value else None

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
            # Compared in clear (every sealing has a new nonce); a stale sealing is rewritten too.
            if current is None or _encoder.encode(current) != _encoder.encode(subscription) or await self._stale(key):
                await self.put(subscription)

    async def _stale(self, key: str) -> bool:
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return True
        return not entry.value or is_stale(_decoder.decode(entry.value), self.keyring)

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
                try:
                    subscription = self._decode(entry.value)
                except SecretKeyError as exc:
                    # Not this process's key: its events wait in the backlog, loudly.
                    _log.error("subscription %s not run here: %s", entry.key, exc)
                    continue
                yield RegistryChange(subscription=subscription)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
