"""The OpenAPI schema: complete, and honoured. A schemathesis run against the served API finds no
500 and no answer the schema does not describe."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from consumers import Engine
from gateway import serve_gateway
from tests.support import Receiver, Running, wait_for

from .conftest import AUTH, TOKEN, new_subscription

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]
MAX_EXAMPLES = 12
TIME_BUDGET = 45.0
"""Seconds the generated requests may take in all; operations left are then skipped, not failed."""


@pytest.fixture
async def served(engine: Engine) -> AsyncIterator[str]:
    """The admin API served by uvicorn on a free port, as ``serve_gateway`` runs it."""
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_gateway(engine, host="127.0.0.1", port=0, admin_token=TOKEN, stop=stop, on_ready=url.set_result)
    )
    try:
        yield await asyncio.wait_for(url, 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _get(base: str, path: str) -> Any:
    response = requests.get(base + path, headers=AUTH, timeout=10)
    response.raise_for_status()
    return response.json()


def test_schema_describes_every_route(served_schema: dict[str, Any]) -> None:
    operations = {(m.upper(), p) for p, ops in served_schema["paths"].items() for m in ops}
    # 21, the public keys and the audit log (issue 17), the dead letters (issue 16), the preview (issue 12),
    # a subscription's health (issue 15)
    assert len(operations) == 29
    assert ("POST", "/api/subscriptions/preview") in operations
    assert ("GET", "/api/subscriptions/{subscription_id}/health") in operations
    assert ("POST", "/api/subscriptions/{subscription_id}/replay") in operations
    assert ("POST", "/api/inbound/github") in operations
    for path, ops in served_schema["paths"].items():
        for method, op in ops.items():
            public = path in ("/health", "/api/inbound/github", "/.well-known/turbohooks/keys")
            assert (not op.get("security")) == public, (method, path)
            assert ("401" in op["responses"]) != (path in ("/health", "/.well-known/turbohooks/keys")), (method, path)
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, status)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= op["responses"].keys(), (method, path)
    assert served_schema["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    problem = served_schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])


@pytest.fixture
async def served_schema(served: str) -> dict[str, Any]:
    return await asyncio.to_thread(_get, served, "/schema/openapi.json")  # type: ignore[no-any-return]


def _check(operation: Any, base: str, real_ids: dict[str, str]) -> Callable[[], None]:
    """A hypothesis test of one operation: generated requests, every answer checked against the schema."""

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(), use_real=st.booleans())
    def run(case: Any, use_real: bool) -> None:
        # Half the cases aim at things that exist, so that answers other than 404 are checked too.
        if use_real and case.path_parameters and operation.method.upper() != "DELETE":
            for name in case.path_parameters:
                if name in real_ids:
                    case.path_parameters[name] = real_ids[name]
        response = case.call(base_url=base, headers=AUTH, timeout=15)
        case.validate_response(response, checks=CHECKS, headers=AUTH, transport_kwargs={"base_url": base})

    return run  # type: ignore[no-any-return]


def _fuzz(base: str, real_ids: dict[str, str]) -> tuple[list[str], list[str]]:
    """Run every operation's generated cases; (failures, operations skipped for time)."""
    schema = schemathesis.openapi.from_url(base + "/schema/openapi.json", headers=AUTH, timeout=10)
    failures: list[str] = []
    skipped: list[str] = []
    deadline = time.monotonic() + TIME_BUDGET
    for result in schema.get_all_operations():
        operation = result.ok()
        if time.monotonic() > deadline:
            skipped.append(operation.label)
            continue
        try:
            _check(operation, base, real_ids)()
        except Exception as exc:  # noqa: BLE001 — every kind of failure is collected and reported together
            failures.append(f"{operation.label}: {exc}")
    return failures, skipped


async def test_schemathesis_finds_no_500_and_no_schema_violation(
    served: str, engine: Engine, running: Running, receiver: Receiver, unique: str
) -> None:
    created = await asyncio.to_thread(
        requests.post,
        served + "/api/subscriptions",
        json=new_subscription(receiver.url + "/fuzz", f"fuzz-{unique}"),
        headers=AUTH,
        timeout=10,
    )
    sid = created.json()["id"]
    await wait_for(lambda: uuid.UUID(sid) in running.worker.running, what="the worker to start it")
    published = await engine.publisher.emit(event_type="issue.created", entity_id=unique)

    async def delivered() -> bool:
        return bool(await engine.deliveries.list(subscription_id=uuid.UUID(sid)))

    await wait_for(delivered, what="a delivery in the log")
    delivery = (await engine.deliveries.list(subscription_id=uuid.UUID(sid)))[0]
    real_ids = {"subscription_id": sid, "delivery_id": str(delivery.id), "event_id": str(published.event_id)}

    failures, skipped = await asyncio.to_thread(_fuzz, served, real_ids)
    assert not failures, "\n\n".join(failures)
    assert len(skipped) <= 5, f"the time budget let too few operations run; skipped {skipped}"
