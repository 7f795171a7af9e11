"""A lease: one holder at a time for a name, across worker processes, kept alive by renewing it.

An ``entity``-ordered subscription is delivered by one worker at a time (its
per-key queues live in that process). The lease is a key of the KV bucket
``turbohooks_leases`` written with a per-message TTL (nats-server 2.11+): the
server removes it when its holder stops renewing (a kill -9, a lost machine),
and every write is a compare-and-set on the key's last revision, so two
workers never both believe they hold it. Timing is the server's (the TTL),
not the clocks of the machines.

The holder renews every :data:`RENEW_EVERY` seconds and stops starting
deliveries once it has not managed to for ``ttl - FENCE_MARGIN`` seconds
(:attr:`Lease.valid`), before anyone else can take over.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import uuid
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from streams import NATS_ERRORS, Settings, open_bucket

from ..subscriptions._consumer import ack_wait

__all__ = ("FENCE_MARGIN", "LEASES_BUCKET", "RENEW_EVERY", "Lease", "LeaseHolder", "lease_ttl")

LEASES_BUCKET: Final = "turbohooks_leases"
RENEW_EVERY: Final = 1.0
"""Seconds between renewals of a held lease."""
FENCE_MARGIN: Final = 1.0
"""A holder that could not renew stops this long before the lease can expire."""
_WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})


class LeaseHolder(msgspec.Struct, frozen=True):
    """Who holds a lease: the value of its key (shown to operators, read by the tests to find the process)."""

    holder: str
    host: str
    pid: int


def lease_ttl(settings: Settings) -> int:
    """Seconds a lease outlives its holder's last renewal: ``ack_wait`` plus three seconds.

    The events a dead holder had in hand come back after ``ack_wait`` (since it
    last touched them, at most its last renewal plus :data:`RENEW_EVERY`); the
    next holder starts once the lease is gone, when every one of them can
    already be redelivered, and it sorts them before sending any. Whole
    seconds: the server's TTL header takes them.
    """
    return math.ceil(ack_wait(settings) + RENEW_EVERY + 2.0)


class Lease:
    """The lease ``name`` in the leases bucket, as one would-be holder sees it."""

    def __init__(self, js: JetStreamContext, kv: KeyValue, name: str, ttl: int) -> None:
        self.js = js
        self.kv = kv
        self.name = name
        self.ttl = ttl
        self.me = LeaseHolder(holder=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())
        self._value = msgspec.json.encode(self.me)
        self._revision = 0
        self._valid_until = 0.0

    @classmethod
    async def open(cls, js: JetStreamContext, settings: Settings, name: str) -> Lease:
        kv = await open_bucket(
            js, settings, LEASES_BUCKET, "turbohooks: which worker delivers each ordered subscription"
        )
        return cls(js, kv, name, lease_ttl(settings))

    @property
    def held(self) -> bool:
        """This process holds the lease (as far as it knows: :attr:`valid` says whether it may still act)."""
        return self._revision > 0

    @property
    def valid(self) -> bool:
        """Held and renewed recently enough that nobody else can have taken it over."""
        return self.held and time.monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; ``False`` when someone does."""
        sent = time.monotonic()
        try:
            self._revision = await self.kv.create(self.name, self._value, msg_ttl=self.ttl)
        except KeyWrongLastSequenceError:
            return False
        except KeyNotFoundError:
            # nats-py's create() looks the key up after a refusal: it expired in between. Next time.
            return False
        self._valid_until = sent + self.ttl - FENCE_MARGIN
        return True

    async def renew(self) -> bool:
        """Write the lease again (compare-and-set); ``False`` when it was lost. NATS errors propagate."""
        sent = time.monotonic()
        try:
            ack = await self.js.publish(
                f"$KV.{LEASES_BUCKET}.{self.name}",
                self._value,
                headers={"Nats-Expected-Last-Subject-Sequence": str(self._revision)},
                msg_ttl=self.ttl,
            )
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                self._revision = 0
                return False
            raise
        self._revision = ack.seq
        self._valid_until = sent + self.ttl - FENCE_MARGIN
        return True

    def abandon(self) -> None:
        """Forget the lease without writing (it could not be renewed in time): it expires by itself."""
        self._revision = 0

    async def release(self) -> None:
        """Give the lease up (only if still ours), so a standby takes over at once; errors are swallowed.

        A renewal cut short (stop cancels the keeper) may have been written without
        its answer arriving: when the revision known here is stale, the key is
        deleted at its current revision if it still names this holder.
        """
        revision, self._revision = self._revision, 0
        if not revision:
            return
        with contextlib.suppress(*NATS_ERRORS):  # if not deleted, it expires after its TTL
            try:
                await self.kv.delete(self.name, last=revision)
            except APIError as exc:
                if exc.err_code not in _WRONG_LAST_SEQUENCE:
                    raise
                entry = await self.kv.get(self.name)
                if entry.value and msgspec.json.decode(entry.value, type=LeaseHolder) == self.me:
                    await self.kv.delete(self.name, last=entry.revision)

    async def holder(self) -> LeaseHolder | None:
        """Who holds the lease now, if anyone."""
        try:
            entry = await self.kv.get(self.name)
        except NATS_ERRORS:
            return None
        if not entry.value:
            return None
        return msgspec.json.decode(entry.value, type=LeaseHolder)
