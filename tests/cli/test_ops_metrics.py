"""`up` serves every role's metrics through the gateway's /metrics; docs/ops' rules and dashboard name only real ones.

The alert rules and the dashboard's queries are parsed as PromQL (promql-parser:
promtool is not on PyPI), and every metric they name must be in a live scrape
of a running ``turbohooks up`` (plus a ``claude-server``, which ``up`` does not run).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.test_up import Up
from tests.support import BIN, Receiver, assert_one_help_and_type_per_family, cli_env, samples, value

OPS = Path(__file__).resolve().parents[2] / "docs" / "ops"
RULES: Final = OPS / "prometheus-alerts.yml"
DASHBOARD: Final = OPS / "grafana-dashboard.json"

PROMETHEUS_OWN: Final = frozenset({"up"})
"""Series Prometheus itself writes for each target."""

_NAME = re.compile(r"\b(turbohooks_[a-z0-9_]+|up(?=\{))")


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _parse(expr: str) -> None:
    # Grafana's interval variable is not PromQL; it stands for a range.
    promql_parser.parse(expr.replace("$__rate_interval", "5m"))


def _names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    return set(_NAME.findall(expr))


def test_the_alert_rules_are_valid_prometheus_rules() -> None:
    rules = _rules()
    assert len(rules) >= 10
    alerts = [rule["alert"] for rule in rules]
    assert len(alerts) == len(set(alerts)), "alert names are unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        _parse(rule["expr"])
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    # The design's alerts: failure rate, timeouts, authentication failures; and dead letters, lag, silence.
    for wanted in ("FailureRate", "Timeouts", "AuthFailures", "DeadLetters", "Lag", "NotReporting"):
        assert any(wanted in alert for alert in alerts), wanted


def test_the_dashboard_queries_are_promql() -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 20
    for query in queries:
        _parse(query)


def test_a_broken_expression_is_refused() -> None:
    """The parser is a real check: an unclosed call fails."""
    with pytest.raises(ValueError, match="parenthesis"):
        _parse("sum(rate(turbohooks_deliveries_total[5m])")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    started = Up.start(tmp_path / "data", "--quiet", WEBHOOK_TIMEOUT="5")
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def claude_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    env = cli_env(TURBOHOOKS_DATA_DIR=str(tmp_path / "claude"), CLAUDE_WEBHOOK_SECRET=secret)
    process = subprocess.Popen(
        [str(BIN), "claude-server", "--port", str(_free_port()), "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _exposed(text: str) -> set[str]:
    """Every series name an exposition offers: counters' ``_total``, histograms' ``_bucket``/``_sum``/``_count``."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


async def _until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_up_serves_every_role_through_the_gateway_and_the_ops_docs_name_only_real_metrics(
    up: Up, claude_server: str, receiver: Receiver, unique: str
) -> None:
    await asyncio.to_thread(up.wait_healthy)
    token = (Path(up.env["TURBOHOOKS_DATA_DIR"]) / "admin-token").read_text().strip()
    path = f"/ops-{unique}"
    receiver.endpoint(path)
    async with httpx.AsyncClient(base_url=up.gateway, headers={"Authorization": f"Bearer {token}"}) as api:
        created = await api.post(
            "/api/subscriptions", json={"name": f"ops-{unique}", "url": receiver.url + path, "event_types": ["tag.*"]}
        )
        assert created.status_code == 201, created.text
        sub = created.json()["id"]
        published = await api.post("/api/events", json={"event_type": "tag.created", "entity_id": unique})
        assert published.status_code == 201, published.text

        text = ""

        async def delivered() -> bool:
            nonlocal text
            response = await api.get("/metrics")
            assert response.status_code == 200
            text = response.text
            found = samples(text)
            return (
                value(
                    found,
                    "turbohooks_subscription_deliveries_total",
                    process="worker",
                    subscription_id=sub,
                    outcome="success",
                )
                == 1
                and value(found, "turbohooks_recorder_attempts_total", process="recorder") >= 1
            )

        await _until(delivered, "the delivery counted in the gateway's /metrics")
    assert_one_help_and_type_per_family(text)
    found = samples(text)
    # Every role of `up` reports, each sample labelled with its process.
    started = {dict(labels)["process"] for name, labels in found if name == "turbohooks_process_start_time_seconds"}
    assert started == {"gateway", "worker", "recorder", "scheduler"}
    assert value(found, "turbohooks_deliveries_total", process="worker", integration="webhook", outcome="success") == 1
    assert value(found, "turbohooks_delivery_duration_seconds_count", process="worker", integration="webhook") == 1
    assert (
        value(
            found, "turbohooks_api_requests_total", process="gateway", method="POST", route="/api/events", status="201"
        )
        == 1
    )
    assert value(found, "turbohooks_metrics_refresh_ok", process="gateway") == 1

    async with httpx.AsyncClient() as client:
        claude = ""

        async def answered() -> bool:
            nonlocal claude
            try:
                claude = (await client.get(claude_server)).text
            except httpx.TransportError:
                return False
            return True

        await _until(answered, "claude-server's /metrics")
    exposed = _exposed(text) | _exposed(claude) | PROMETHEUS_OWN
    named = set().union(*(_names(rule["expr"]) for rule in _rules()), *(_names(q) for q in _dashboard_queries()))
    assert named - exposed == set()
