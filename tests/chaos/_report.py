"""The table of results, on the terminal and in ``docs/reliability.md``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ._run import RETRY_SCHEDULE, Options, Result, Scenario

__all__ = ("markdown", "table")

_COLUMNS = (
    "scenario",
    "published",
    "acked",
    "received unique",
    "in log",
    "lost",
    "missing from log",
    "duplicates",
    "time to resume",
    "verdict",
)


def _cells(result: Result) -> list[str]:
    resume = "-" if result.resume is None else f"{result.resume:.1f}s"
    return [
        result.scenario,
        str(result.published),
        str(result.acked),
        str(result.received),
        str(result.in_log),
        str(result.lost),
        str(result.missing_from_log),
        str(result.duplicates),
        resume,
        result.verdict,
    ]


def table(results: Sequence[Result]) -> str:
    rows = [list(_COLUMNS), *(_cells(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for result in results:
        for note in result.notes:
            if note:
                lines.append(f"  {result.scenario}: {note}")
        if result.workdir:
            lines.append(f"  {result.scenario}: logs kept in {result.workdir}")
    return "\n".join(lines)


def markdown(results: Sequence[Result], scenarios: Sequence[Scenario], options: Options, command: str) -> str:
    described = {s.name: s.description for s in scenarios}
    out = [
        "# Reliability: the fault suite",
        "",
        "Measured by the fault suite (`tests/chaos/`, issue 16); the latest run, written by",
        "",
        f"    {command}",
        "",
        f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {options.events} events at {options.rate:g}/s per scenario, "
        "the fault injected after 30% of them. The worker, the recorder, the gateway and the scheduler run as "
        "separate `turbohooks` processes (`up` in its own scenario); the receiver is a real HTTP server on "
        f"loopback. Environment: `WEBHOOK_TIMEOUT={options.webhook_timeout:g}s` (so ack_wait, after which a crashed "
        f"worker's events come back, is {options.webhook_timeout + max(2.0, options.webhook_timeout / 2):g}s), "
        f"`WEBHOOK_RETRY_SCHEDULE={RETRY_SCHEDULE}`, SQLite in the data dir unless said otherwise.",
        "",
        "- **lost**: acknowledged by JetStream, never received; **missing from log**: received, no row in the "
        "delivery log; **duplicates**: requests beyond one per `webhook-id`.",
        "- **time to resume**: from the end of the fault (or from the fault itself, for the cluster's one node) to "
        "the first delivery of an event published after it; for the recorder, the database and the disk, to the "
        "first new row in the log; for the gateway, from the kill to `/health` answering again.",
        "- **verdict**: PASS when 0 lost, 0 missing from the log, and resume within what the issue promises "
        "(2 s after nats-server returns, 5 s after one cluster node stops).",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    out += ["| " + " | ".join(_cells(r)) + " |" for r in results]
    out += ["", "## Scenarios and notes", ""]
    for result in results:
        out.append(f"- **{result.scenario}**: {described.get(result.scenario, '')}.")
        out += [f"  - {note}" for note in result.notes if note]
    out.append("")
    return "\n".join(out)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
