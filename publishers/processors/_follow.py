"""Following the events stream in order, with state in NATS KV: the tools of the stream processors.

:class:`StreamFollower` reads a stream in order from a sequence (surviving
NATS restarts); :class:`RecordStore` keeps typed records in a KV bucket with
compare-and-set, so two processes can run the same processor.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue

from streams import (
    NATS_ERRORS,
    Event,
    EventValidationError,
    TurbohooksError,
    decode_event,
)

__all__ = ("BAD_EVENT_ERRORS", "RecordStore", "StreamFollower", "decode_messages", "kv_key")

_log = logging.getLogger("turbohooks.follow")

_BATCH: Final = 256
_FETCH_TIMEOUT: Final = 1.0
_CAS_ATTEMPTS: Final = 16
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_CURSOR: Final = "cursor"


def kv_key(kind: str, entity_id: str) -> str:
    """A KV key for an entity; ids with characters KV keys refuse are base64url-encoded after ``=``."""
    if _SAFE_KEY.match(entity_id):
        return f"{kind}.{entity_id}"
    return f"{kind}.={base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip('=')}"


T = TypeVar("T", bound=msgspec.Struct)


class RecordStore(Generic[T]):
    """Typed records in a KV bucket, cached in memory, changed with compare-and-set."""

    def __init__(self, kv: KeyValue, kind: type[T]) -> None:
        self.kv = kv
        self._decoder = msgspec.json.Decoder(kind)
        self._encoder = msgspec.json.Encoder()
        self._cache: dict[str, tuple[T, int]] = {}
        self._complete = False
        self._stale: set[str] = set()

    async def _entry(self, key: str) -> tuple[T | None, int]:
        if key in self._cache:
            return self._cache[key]
        if self._complete and key not in self._stale:
            return None, 0  # everything was loaded: a key not in the cache does not exist
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None, 0
        finally:
            self._stale.discard(key)
        if not entry.value or entry.revision is None:
            return None, 0
        record = self._decoder.decode(entry.value)
        self._cache[key] = (record, entry.revision)
        return record, entry.revision

    async def get(self, key: str) -> T | None:
        """The record at ``key``, or None."""
        return (await self._entry(key))[0]

    def cached(self) -> dict[str, T]:
        """Every record this store has read or written, by key."""
        return {key: record for key, (record, _) in self._cache.items()}

    async def load(self, pattern: str) -> int:
        """Read every record whose key matches ``pattern`` (``item.>``) into the cache; how many.

        Afterwards a key missing from the cache is taken as absent without asking
        the bucket; a write that finds otherwise (another writer) reads it then.
        """
        watcher = await self.kv.watch(pattern)
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.operation is None and entry.value and entry.revision is not None:
                    self._cache[entry.key] = (self._decoder.decode(entry.value), entry.revision)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        self._complete = True
        return len(self._cache)

    async def change(self, key: str, fn: Callable[[T | None], Awaitable[T | None]]) -> T | None:
        """Write ``fn(record)`` unless it returns None or the same record; retried when another writer won."""
        for _ in range(_CAS_ATTEMPTS):
            record, revision = await self._entry(key)
            new = await fn(record)
            if new is None or new is record:
                return record
            payload = self._encoder.encode(new)
            try:
                if revision:
                    revision = await self.kv.update(key, payload, last=revision)
                else:
                    revision = await self.kv.create(key, payload)
            except KeyWrongLastSequenceError:
                # Another writer was first: read its record and decide again.
                self._cache.pop(key, None)
                self._stale.add(key)
                continue
            self._cache[key] = (new, revision)
            return new
        raise TurbohooksError(f"turbohooks: KV record {key} kept changing under {_CAS_ATTEMPTS} writes")

    async def read_cursor(self) -> int:
        """The last stream sequence applied (0: none)."""
        try:
            entry = await self.kv.get(_CURSOR)
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def write_cursor(self, seq: int) -> None:
        """Remember that every event up to ``seq`` was applied (written after the records)."""
        await self.kv.put(_CURSOR, str(seq).encode())


class StreamFollower:
    """Reads some subjects of a stream in order, from a sequence or a time on.

    An ephemeral pull consumer without acks: it never redelivers nor reorders,
    and the reader keeps its own cursor. When the consumer is lost (a long
    disconnect), it is created again after the last sequence read.
    """

    def __init__(self, js: JetStreamContext, stream: str, subjects: list[str]) -> None:
        self.js = js
        self.stream = stream
        self.subjects = subjects
        self.last_seq = 0
        """The sequence of the last message returned."""
        self._start_time: datetime | None = None
        self._psub: JetStreamContext.PullSubscription | None = None

    async def open(self, *, start_seq: int = 1, start_time: datetime | None = None) -> None:
        """Start reading at ``start_seq`` (or at the first message stored at or after ``start_time``)."""
        self.last_seq = max(start_seq, 1) - 1
        self._start_time = start_time
        await self._subscribe()

    async def _subscribe(self) -> None:
        config = js_api.ConsumerConfig(
            filter_subjects=self.subjects,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_policy=js_api.AckPolicy.NONE,
            inactive_threshold=300.0,
            mem_storage=True,
            num_replicas=1,
        )
        if self.last_seq > 0:
            config.deliver_policy = js_api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.last_seq + 1
        elif self._start_time is not None:
            config.deliver_policy = js_api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = self._start_time
        self._psub = await self.js.pull_subscribe(self.subjects[0], stream=self.stream, config=config)

    async def restart(self, start_seq: int, stop: asyncio.Event) -> None:
        """Start reading again at ``start_seq``, waiting out a NATS outage (or until ``stop``)."""
        await self.close()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            try:
                await self.open(start_seq=start_seq)
                return
            except NATS_ERRORS as exc:
                _log.info("follower: cannot subscribe yet (%s)", exc)

    async def pending(self) -> int:
        """Messages stored and not yet read."""
        if self._psub is None:
            await self._subscribe()
        assert self._psub is not None
        info = await self._psub.consumer_info()
        return int(info.num_pending or 0) + self._psub.pending_msgs

    async def read_all(self) -> AsyncIterator[list[Msg]]:
        """Batches of everything stored when called, then stop: what "catching up" reads."""
        target = int((await self.js.stream_info(self.stream)).state.last_seq)
        while not await self._caught_up_to(target):
            msgs = await self.fetch()
            if msgs:
                yield msgs

    async def _caught_up_to(self, target: int) -> bool:
        """Whether every message of our subjects stored up to ``target`` was read.

        Asked of the stream, not only of the consumer: a consumer learns of a new
        message a moment after its publish was acknowledged.
        """
        if self.last_seq >= target:
            return True
        if await self.pending():
            return False
        for subject in self.subjects:
            try:
                msg = await self.js.get_msg(self.stream, seq=self.last_seq + 1, subject=subject, next=True)
            except JsNotFoundError:
                continue
            if msg.seq is not None and msg.seq <= target:
                return False
        return True

    async def fetch(self, batch: int = _BATCH, timeout: float = _FETCH_TIMEOUT) -> list[Msg]:
        """Up to ``batch`` messages in stream order; ``[]`` when none came within ``timeout``."""
        if self._psub is None:
            # The consumer was lost (inactive too long, server restarted): start again where we were.
            try:
                await self._subscribe()
            except NATS_ERRORS as exc:
                _log.info("follower: cannot subscribe yet (%s)", exc)
                await asyncio.sleep(min(timeout, 1.0))
                return []
        assert self._psub is not None
        try:
            msgs = await self._psub.fetch(batch, timeout=timeout)
        except TimeoutError:
            return []
        except NatsError as exc:
            _log.info("follower: %s; re-creating the consumer after seq %d", exc, self.last_seq)
            await self.close()
            return []
        if msgs:
            self.last_seq = msgs[-1].metadata.sequence.stream
        return msgs

    async def fetch_or_stop(self, stopper: asyncio.Task[Any], timeout: float) -> list[Msg] | None:
        """:meth:`fetch`, or None as soon as ``stopper`` completes."""
        fetch = asyncio.create_task(self.fetch(timeout=timeout))
        done, _ = await asyncio.wait({fetch, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if fetch not in done:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, *NATS_ERRORS):
                await fetch
            return None
        return fetch.result()

    async def close(self) -> None:
        """Delete the consumer (the server also would, after five idle minutes)."""
        if self._psub is not None:
            with contextlib.suppress(*NATS_ERRORS):
                await self._psub.unsubscribe()
            self._psub = None


BAD_EVENT_ERRORS: Final = (TypeError, ValueError, KeyError, AttributeError)
"""What a well-formed event with odd values (a list where a status belongs) can raise in a processor's model.

A processor logs the event and goes on: one bad message never stops the loop (and, with its cursor
before the event, it would stop again on every restart).
"""


def decode_messages(msgs: list[Msg]) -> list[tuple[int, Event]]:
    """``(stream sequence, event)`` of each message; undecodable ones are logged and skipped."""
    events: list[tuple[int, Event]] = []
    for msg in msgs:
        try:
            events.append((msg.metadata.sequence.stream, decode_event(msg.data)))
        except EventValidationError as exc:
            _log.error("skipping undecodable event at seq %d: %s", msg.metadata.sequence.stream, exc)
    return events
