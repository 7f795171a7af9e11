"""Ids a person can type: short prefixes and names wherever an id goes; tables that fit; `subscriptions update`."""

from __future__ import annotations

import json
import subprocess
import uuid

import msgspec
import pytest

from consumers import Engine, SubscriptionCreate
from gateway.operations import resolve_delivery, resolve_subscription, short_id
from streams import EventValidationError, NotFoundError, Settings
from tests.support import Receiver, Running, engine_cli_env, run_cli_async, wait_for


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return engine_cli_env(settings, columns=80)


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await run_cli_async(*args, env=env)


async def test_a_prefix_or_a_name_resolves_and_an_ambiguous_prefix_lists_the_candidates(
    engine: Engine, unique: str
) -> None:
    sub = await engine.service.create(
        SubscriptionCreate(name=f"ids-{unique}", url="http://127.0.0.1:9/x", event_types=["issue.*"])
    )
    assert (await resolve_subscription(engine, f"ids-{unique}")).id == sub.id
    assert (await resolve_subscription(engine, short_id(sub.id))).id == sub.id
    assert (await resolve_subscription(engine, str(sub.id)[:13])).id == sub.id, "dashes may be typed"
    twin = msgspec.structs.replace(sub, id=uuid.UUID(sub.id.hex[:6] + "0" * 26), name=f"twin-{unique}")
    await engine.subscriptions.create(twin)
    with pytest.raises(EventValidationError) as ambiguous:
        await resolve_subscription(engine, sub.id.hex[:6])
    assert f"ids-{unique}" in ambiguous.value.problem and f"twin-{unique}" in ambiguous.value.problem
    with pytest.raises(EventValidationError, match="no subscription's id, id prefix or name"):
        await resolve_subscription(engine, "no-such-name")
    with pytest.raises(NotFoundError):
        await resolve_subscription(engine, "ffffffff")
    with pytest.raises(EventValidationError, match="not a delivery id"):
        await resolve_delivery(engine, "xyz")


async def test_subscription_commands_take_names_and_tables_fit_80_columns(
    engine: Engine, env: dict[str, str], unique: str
) -> None:
    name = f"local-{unique}"
    created = await _cli(
        "subscriptions",
        "create",
        "--name",
        name,
        "--url",
        "http://127.0.0.1:9/hook",
        "--event-types",
        "issue.*",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    sid = json.loads(created.stdout)["id"]

    listed = await _cli("subscriptions", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert sid[:8] in listed.stdout and name in listed.stdout
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())
    wide = await _cli("subscriptions", "list", "--wide", env={**env, "COLUMNS": "200"})
    assert sid in wide.stdout

    for verb, status in (("pause", "paused"), ("resume", "active")):
        answer = await _cli("subscriptions", verb, name, env=env)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["status"] == status
    shown = await _cli("subscriptions", "show", sid[:8], env=env)
    assert json.loads(shown.stdout)["name"] == name

    updated = await _cli(
        "subscriptions",
        "update",
        name,
        "--url",
        "http://127.0.0.1:9/other",
        "--max-in-flight",
        "1",
        "--retry-schedule",
        "5s,1m",
        "--header",
        "X-Team: core",
        env=env,
    )
    assert updated.returncode == 0, updated.stderr
    after = json.loads(updated.stdout)
    assert after["url"] == "http://127.0.0.1:9/other" and after["max_in_flight"] == 1
    assert after["retry_schedule"] == [5.0, 60.0] and after["headers"] == {"X-Team": "core"}
    assert after["event_types"] == ["issue.*"], "what is not given stays"

    # A refused field is named by its option, and nothing of the update is saved.
    refused = await _cli("subscriptions", "update", name, "--name", "renamed", "--header", "Host: evil", env=env)
    assert refused.returncode == 2
    assert "--header Host" in refused.stderr and "Traceback" not in refused.stderr
    refused = await _cli("subscriptions", "update", name, "--max-in-flight", "5000", env=env)
    assert refused.returncode == 2 and "--max-in-flight" in refused.stderr
    nothing = await _cli("subscriptions", "update", name, env=env)
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    still = await engine.service.get(uuid.UUID(sid))
    assert still.name == name and still.headers == {"X-Team": "core"} and still.max_in_flight == 1

    back = await _cli("subscriptions", "update", sid[:8], "--retry-schedule", "default", "--no-headers", env=env)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["retry_schedule"] is None and json.loads(back.stdout)["headers"] == {}

    deleted = await _cli("subscriptions", "delete", name, env=env)
    assert deleted.returncode == 0 and sid in deleted.stdout


async def test_deliveries_by_short_id_payload_as_json_retry_numbered_and_errors_shown(
    engine: Engine, env: dict[str, str], running: Running, receiver: Receiver, unique: str
) -> None:
    receiver.statuses["/bad"] = 400  # a client error fails at once
    name = f"dl-{unique}"
    sub = await engine.service.create(SubscriptionCreate(name=name, url=receiver.url + "/bad", event_types=["issue.*"]))
    broken = await engine.service.create(
        SubscriptionCreate(name=f"refused-{unique}", url="http://127.0.0.1:9/x", event_types=["issue.*"])
    )
    await wait_for(lambda: {sub.id, broken.id} <= set(running.worker.running), what="the worker to start them")
    await engine.publisher.emit(event_type="issue.created", entity_id=unique, data={"current": {"title": "Bug"}})

    async def settled() -> bool:
        mine = await engine.deliveries.list(subscription_id=sub.id, status="failed")
        theirs = await engine.deliveries.list(subscription_id=broken.id, status="failed")
        return len(mine) == 1 and len(theirs) == 1

    await wait_for(settled, timeout=30, what="both deliveries to fail")
    delivery = (await engine.deliveries.list(subscription_id=sub.id))[0]

    listed = await _cli("deliveries", "list", "--subscription", f"refused-{unique}", env=env)
    assert listed.returncode == 0, listed.stderr
    error = (await engine.deliveries.list(subscription_id=broken.id))[0].error_message
    assert error
    assert error.split()[0] in listed.stdout, f"the error column shows the error:\n{listed.stdout}"

    receiver.statuses["/bad"] = 200
    retried = await _cli("deliveries", "retry", short_id(delivery.id), env=env)
    assert retried.returncode == 0, retried.stderr

    async def delivered() -> bool:
        return (await engine.deliveries.get(delivery.id)).status == "success"

    await wait_for(delivered, what="the retry to succeed")
    shown = await _cli("deliveries", "show", short_id(delivery.id), env=env)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert [a["attempt"] for a in detail["attempt_log"]] == [1, 2]
    assert [a["trigger"] for a in detail["attempt_log"]] == ["live", "manual"]
    assert detail["payload"]["event_type"] == "issue.created"
    assert detail["payload"]["data"]["current"] == {"title": "Bug"}
    assert shown.stdout.startswith("{\n"), "pretty-printed"

    unknown = await _cli("deliveries", "show", "0000", env=env)
    assert unknown.returncode == 1 and "no delivery id starts with" in unknown.stderr
