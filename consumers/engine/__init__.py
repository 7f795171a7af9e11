"""The delivery engine: the worker, its pull loops, the batcher, the HTTP client, retries, outcomes.

Imports no SQLAlchemy, Litestar, aiohttp.web or httpx: a worker process loads
only this, the wire Structs (``consumers._messages``), the registry and consumer
provisioning (``consumers.subscriptions``) and ``integrations``.
"""

from __future__ import annotations

from ._batcher import AttemptBatcher
from ._deliverer import EVENT_SOURCE, Attempted, Deliverer, client_tls, delivery_headers
from ._http import DeliveryClient, HttpResult
from ._lease import LEASES_BUCKET, Lease, LeaseHolder, lease_ttl
from ._metrics import DELIVERY_OUTCOMES, DeliveryOutcome, WorkerMetrics
from ._ordering import EntityLoop, KeyedTurns, key_of, lease_name, subscription_loop
from ._outcome import Dead, Delivered, Gone, Outcome, Retry, decide, logged_as
from ._pull import ContinuousPull
from ._redeliver import RedeliveryRequest, redeliver_subject
from ._retry import Classification, RetryPolicy, classify
from ._throttle import THROTTLE_BUCKET, Throttle, Throttles, ThrottleState
from ._worker import Worker

__all__ = (
    "DELIVERY_OUTCOMES",
    "EVENT_SOURCE",
    "LEASES_BUCKET",
    "THROTTLE_BUCKET",
    "AttemptBatcher",
    "Attempted",
    "Classification",
    "ContinuousPull",
    "Dead",
    "Delivered",
    "Deliverer",
    "DeliveryClient",
    "DeliveryOutcome",
    "EntityLoop",
    "Gone",
    "HttpResult",
    "KeyedTurns",
    "Lease",
    "LeaseHolder",
    "Outcome",
    "RedeliveryRequest",
    "Retry",
    "RetryPolicy",
    "Throttle",
    "ThrottleState",
    "Throttles",
    "Worker",
    "WorkerMetrics",
    "classify",
    "client_tls",
    "decide",
    "delivery_headers",
    "key_of",
    "lease_name",
    "lease_ttl",
    "logged_as",
    "redeliver_subject",
    "subscription_loop",
)
