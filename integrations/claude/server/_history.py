"""The runs of ``turbohooks claude-server``: kept in memory and appended to ``claude-runs.jsonl``."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime
from typing import Final, Literal

import msgspec

from ._config import ClaudeServerConfig

__all__ = ("FINISHED", "ClaudeRun", "RunHistory", "RunStatus")

RunStatus = Literal["queued", "running", "succeeded", "failed", "timeout", "error", "interrupted"]

FINISHED: Final = frozenset({"succeeded", "failed", "timeout", "error", "interrupted"})
_SEEN_CAP: Final = 10_000
_encoder: Final = msgspec.json.Encoder()


class ClaudeRun(msgspec.Struct, kw_only=True):
    """One run of the command for one event."""

    run_id: str
    webhook_id: str
    event_id: str
    event_type: str
    issue: str
    """The queue the run waits in: the issue id, or ``<entity_type>:<entity_id>`` for events outside issues."""
    status: RunStatus = "queued"
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    """The command's exit status; negative: killed by that signal."""
    output: str = ""
    stderr: str = ""
    output_truncated: bool = False
    error: str | None = None
    reply_event_id: str | None = None


_run_decoder: Final = msgspec.json.Decoder(ClaudeRun)


class RunHistory:
    """Runs by id (the latest ``history`` of them) and the ``webhook-id`` of each, to drop redeliveries."""

    def __init__(self, config: ClaudeServerConfig) -> None:
        self._config = config
        self.runs: OrderedDict[str, ClaudeRun] = OrderedDict()
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._log_lock = asyncio.Lock()

    def run_of(self, webhook_id: str) -> str | None:
        """The run a ``webhook-id`` started, if it was seen."""
        return self._seen.get(webhook_id)

    def saw(self, webhook_id: str, run_id: str) -> None:
        self._seen[webhook_id] = run_id
        while len(self._seen) > _SEEN_CAP:
            self._seen.popitem(last=False)

    def load(self) -> None:
        path = self._config.log_path
        if not path.exists():
            return
        latest: OrderedDict[str, ClaudeRun] = OrderedDict()
        with path.open("rb") as lines:
            for line in lines:
                try:
                    run = _run_decoder.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue  # a line cut short by a crash
                latest.pop(run.run_id, None)
                latest[run.run_id] = run
        interrupted = []
        for run in latest.values():
            if run.status not in FINISHED:
                run.status = "interrupted"
                run.error = "the server stopped before the run finished"
                interrupted.append(run)
            self._seen[run.webhook_id] = run.run_id
        self.runs = OrderedDict(list(latest.items())[-self._config.history :])
        if interrupted:
            with path.open("ab") as log:
                log.write(b"".join(_encoder.encode(run) + b"\n" for run in interrupted))

    def _append(self, line: bytes) -> None:
        with self._config.log_path.open("ab") as log:
            log.write(line)

    async def record(self, run: ClaudeRun) -> None:
        self.runs[run.run_id] = run
        self.runs.move_to_end(run.run_id)
        while len(self.runs) > self._config.history:
            self.runs.popitem(last=False)
        async with self._log_lock:
            await asyncio.to_thread(self._append, _encoder.encode(run) + b"\n")
