"""One exposition of several roles' registries, and the tiny /metrics server (no web framework)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from consumers import WorkerMetrics
from streams import MetricsServer, ProcessMetrics, exposition


def test_roles_merge_into_one_family_each_with_a_process_label() -> None:
    worker, recorder = ProcessMetrics("worker"), ProcessMetrics("recorder")
    Counter("turbohooks_things", "Things.", ("kind",), registry=worker.registry).labels("a").inc(2)
    text = exposition({"worker": worker.registry, "recorder": recorder.registry}).decode()
    # Both roles have the start-time family: one HELP, one TYPE, a sample per process.
    assert text.count("# TYPE turbohooks_process_start_time_seconds gauge") == 1
    assert text.count("# HELP turbohooks_process_start_time_seconds ") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    started = families["turbohooks_process_start_time_seconds"]
    assert sorted(s.labels["process"] for s in started.samples) == ["recorder", "worker"]
    assert [(s.name, s.labels, s.value) for s in families["turbohooks_things"].samples] == [
        ("turbohooks_things_total", {"kind": "a", "process": "worker"}, 2.0)
    ]
    assert "_created" not in text  # counters' start times are not doubled into series


def test_worker_histograms_put_a_value_on_a_bound_in_that_bucket() -> None:
    metrics = WorkerMetrics()
    sub = uuid.uuid4()
    for seconds in (0.005, 0.0051, 31.0):
        metrics.delivery("webhook", "success", seconds=seconds, subscription_id=sub)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    buckets = {
        s.labels["le"]: s.value
        for s in families["turbohooks_delivery_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert (buckets["0.005"], buckets["0.01"], buckets["30.0"], buckets["+Inf"]) == (1, 2, 2, 3)
    # Above the bound of subscriptions, the per-subscription series go, and do not come back meanwhile.
    bounded = WorkerMetrics(subscription_labels=1)
    bounded.delivery("webhook", "retry", subscription_id=sub)
    bounded.running(2)
    bounded.delivery("webhook", "retry", subscription_id=sub)
    assert "subscription_id" not in bounded.render().decode()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [("GET /metrics", b"200"), ("GET /metrics?x=1", b"200"), ("GET /", b"404"), ("POST /metrics", b"405")],
)
async def test_the_server_answers_only_get_metrics(request_line: str, status: bytes) -> None:
    metrics = ProcessMetrics("scheduler")
    async with MetricsServer(metrics.render, port=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"{request_line} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert answer.split(b" ")[1] == status
    assert (b'process="scheduler"' in answer) == (status == b"200")


async def test_a_taken_port_is_one_line_naming_it() -> None:
    async with MetricsServer(ProcessMetrics("worker").render, port=0) as first:
        with pytest.raises(OSError, match=rf"metrics: cannot listen on 127.0.0.1:{first.port}"):
            async with MetricsServer(ProcessMetrics("worker").render, port=first.port):
                pass
