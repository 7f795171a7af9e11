"""The fault suite's short form: a few faults, a few hundred events, 0 lost.

Only scenarios that hold today are here; those failing on the known defects of
issue 16 (a database lock loses log records, ...) are measured by the program,
``python -m tests.chaos`` (``make chaos``), until they are fixed.
"""

from __future__ import annotations

import pytest

from ._run import Options, Result, run_scenario
from ._scenarios import by_name

_OPTIONS = Options(events=300, rate=300.0, short=True, webhook_timeout=4.0)
"""4 s: ack_wait is 6 s, so a crashed worker's events come back quickly."""


async def _run(name: str) -> Result:
    result = await run_scenario(by_name(name), _OPTIONS)
    assert result.verdict != "ERROR", result.notes
    return result


def _explain(result: Result) -> str:
    return f"{result} (logs: {result.workdir})"


async def test_kill_9_of_the_worker_loses_nothing() -> None:
    result = await _run("kill-worker")
    assert result.acked == result.published == 300
    assert result.lost == 0, _explain(result)
    assert result.missing_from_log == 0, _explain(result)


@pytest.mark.slow
async def test_kill_9_of_nats_server_loses_nothing() -> None:
    result = await _run("kill-nats")
    assert result.acked == result.published == 300
    assert result.lost == 0, _explain(result)
    assert result.missing_from_log == 0, _explain(result)
    # Pull requests are asked again on reconnect: deliveries resume within 2 s of the server's return.
    assert result.resume is not None and result.resume <= 2.0, _explain(result)


@pytest.mark.slow
async def test_one_cluster_node_stopped_mid_burst_loses_nothing() -> None:
    result = await _run("cluster-one-down")
    assert result.acked == result.published == 300
    assert result.lost == 0, _explain(result)
    assert result.missing_from_log == 0, _explain(result)
    assert result.resume is not None and result.resume <= 5.0, _explain(result)
