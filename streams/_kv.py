"""JetStream key-value buckets: declared once, opened or created by one helper that every part uses."""

from __future__ import annotations

from nats.js import api as js_api
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from .settings import Settings

__all__ = ("open_bucket",)


async def open_bucket(js: JetStreamContext, settings: Settings, name: str, description: str) -> KeyValue:
    """Open the KV bucket ``name``, creating it when missing (creating an identical one twice is harmless).

    One value per key (history 1), on file, at the configured replicas.
    """
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(
            js_api.KeyValueConfig(
                bucket=name,
                description=description,
                history=1,
                storage=js_api.StorageType.FILE,
                replicas=settings.stream_replicas,
            )
        )
