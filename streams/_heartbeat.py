"""Heartbeats: each long-running process says every few seconds that it is there, in a KV bucket.

A worker, the recorder and the scheduler each put ``<role>.<host>.<pid>`` into the bucket
``turbohooks_heartbeats`` every :data:`HEARTBEAT_EVERY` seconds, and delete it when they
stop cleanly. A key that stops moving is a process that died or hangs: the alert evaluator
(``gateway.operations``) raises ``process_silent`` for it. Keys expire after
:data:`HEARTBEAT_TTL`, so a process gone for good is forgotten (and its alert cleared).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from typing import Final

import msgspec
from nats.errors import Error as NatsError
from nats.js import api as js_api
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from .settings import Settings

__all__ = ("HEARTBEATS_BUCKET", "HEARTBEAT_EVERY", "HEARTBEAT_TTL", "heartbeat", "process_key", "silent_processes")

HEARTBEATS_BUCKET: Final = "turbohooks_heartbeats"
HEARTBEAT_EVERY: Final = 5.0
"""Seconds between two heartbeats of one process."""
HEARTBEAT_TTL: Final = 3600.0
"""Seconds after which the bucket forgets a process that stopped reporting."""
_UNSAFE_KEY: Final = re.compile(r"[^-_a-zA-Z0-9]")


class _Beat(msgspec.Struct):
    at: float
    """Unix time of the heartbeat (the process's clock)."""


def process_key(role: str) -> str:
    """``<role>.<host>.<pid>``, in the characters a KV key allows."""
    host = _UNSAFE_KEY.sub("-", socket.gethostname()) or "host"
    return f"{role}.{host}.{os.getpid()}"


async def _bucket(js: JetStreamContext, settings: Settings) -> KeyValue:
    try:
        return await js.key_value(HEARTBEATS_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(
            js_api.KeyValueConfig(
                bucket=HEARTBEATS_BUCKET,
                description="turbohooks: each process's last heartbeat",
                history=1,
                ttl=HEARTBEAT_TTL,
                storage=js_api.StorageType.FILE,
                replicas=settings.stream_replicas,
            )
        )


async def heartbeat(
    js: JetStreamContext, settings: Settings, role: str, stop: asyncio.Event, *, every: float = HEARTBEAT_EVERY
) -> None:
    """Put this process's heartbeat every ``every`` seconds until ``stop``, then delete it.

    NATS away: the beat is skipped (the process is not failed for it; silence is the alert).
    """
    key = process_key(role)
    kv: KeyValue | None = None
    while not stop.is_set():
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            kv = kv or await _bucket(js, settings)
            await kv.put(key, msgspec.json.encode(_Beat(at=time.time())))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    if kv is not None:
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await kv.delete(key)  # a clean stop is not a silence


async def silent_processes(js: JetStreamContext, settings: Settings, silence: float) -> dict[str, float]:
    """The processes whose last heartbeat is older than ``silence`` seconds, with its age."""
    try:
        kv = await js.key_value(HEARTBEATS_BUCKET)
        keys = await kv.keys()
    except (BucketNotFoundError, NoKeysError):
        return {}
    now = time.time()
    silent: dict[str, float] = {}
    for key in keys:
        with contextlib.suppress(Exception):  # deleted meanwhile, or not a heartbeat
            entry = await kv.get(key)
            if entry.value:
                age = now - msgspec.json.decode(entry.value, type=_Beat).at
                if age > silence:
                    silent[key] = age
    return silent
