"""Runs of the command: one at a time per issue, ``max_concurrent`` across issues, killed on timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import msgspec

from streams import Event, TurbohooksError

from ...core import truncate
from .._integration import issue_id_of, reply_event
from ._config import ClaudeServerConfig
from ._history import FINISHED, ClaudeRun, RunHistory, RunStatus
from ._prompt import build_prompt

__all__ = ("Job", "Publish", "Runner")

Publish = Callable[[Event], Awaitable[object]]
_Read = tuple[bytes, bool]

_CONTEXT_CAP: Final = 20_000
_CONTEXT_TIMEOUT: Final = 10.0
_READ_CHUNK: Final = 65536


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> _Read:
    """Everything a pipe gives until it closes; the first ``cap`` bytes kept (a chatty run cannot fill memory)."""
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_READ_CHUNK):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        truncated |= len(chunk) > room
    return bytes(kept), truncated


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # The command runs in its own session, so its children (claude's tools) go with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Job(msgspec.Struct):
    run: ClaudeRun
    event: Event
    context: dict[str, Any]
    causation: str | None = None
    """The delivery's ``Turbohooks-Causation`` header: the reply carries it (loop prevention)."""


class Runner:
    """The queues of runs, by issue, and the command's execution."""

    def __init__(self, config: ClaudeServerConfig, history: RunHistory, publish: Publish | None) -> None:
        self.config = config
        self._history = history
        self._publish = publish
        self._queues: dict[str, deque[Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, str] = {}
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self._http: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if self.config.issue_context_url:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_CONTEXT_TIMEOUT))

    async def stop(self) -> None:
        """Cancel the runs; mark what is still queued ``interrupted``."""
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._queues.values():
            for job in queue:
                job.run.status = "interrupted"
                await self._history.record(job.run)
        self._queues.clear()
        if self._http is not None:
            await self._http.close()

    def ahead(self, issue: str) -> int:
        """Runs before a new one of ``issue``: its queue and the one running."""
        return len(self._queues.get(issue, ())) + (issue in self._running)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def enqueue(self, job: Job) -> None:
        self._queues.setdefault(job.run.issue, deque()).append(job)
        if job.run.issue not in self._workers:
            self._workers[job.run.issue] = asyncio.create_task(
                self._drain(job.run.issue), name=f"claude-issue-{job.run.issue}"
            )

    async def _drain(self, issue: str) -> None:
        """Run an issue's queue one job at a time, until it is empty."""
        queue = self._queues[issue]
        try:
            while queue:
                async with self._slots:
                    # Taken from the queue only once it can run: a job waiting for a slot is
                    # still queued, and marked interrupted if the server stops meanwhile.
                    job = queue.popleft()
                    self._running[issue] = job.run.run_id
                    try:
                        await self._run(job)
                    finally:
                        del self._running[issue]
        finally:
            if not queue:
                self._queues.pop(issue, None)
            self._workers.pop(issue, None)

    async def _issue_context(self, issue_id: str | None) -> str | None:
        if self._http is None or not self.config.issue_context_url or not issue_id:
            return None
        url = self.config.issue_context_url.replace("{issue_id}", quote(issue_id, safe=""))
        try:
            async with self._http.get(url) as response:
                text = await response.text(errors="replace")
                if response.status >= 400:
                    return f"(issue context unavailable: {url} answered {response.status})"
                return truncate(text, _CONTEXT_CAP)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"(issue context unavailable: {type(exc).__name__}: {exc})"

    def _environment(self, run: ClaudeRun, event: Event, causation: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CLAUDE_WEBHOOK_SECRET"}  # the agent needs no secret
        env.update(
            TURBO_EVENT_ID=str(event.event_id),
            TURBO_EVENT_TYPE=event.event_type,
            TURBO_ISSUE_ID=issue_id_of(event) or "",
            TURBO_CAUSATION_ID=str(event.event_id),
            # What the agent passes back as `causation` if it publishes to Turbo itself.
            TURBO_CAUSATION=causation or "",
            TURBO_ACTOR_TYPE="ai",
            TURBO_RUN_ID=run.run_id,
        )
        return env

    async def _run(self, job: Job) -> None:
        run, event = job.run, job.event
        run.status = "running"
        run.started_at = datetime.now(UTC)
        await self._history.record(run)
        try:
            prompt = build_prompt(event, job.context, await self._issue_context(issue_id_of(event)))
            outcome = await self._execute(run, prompt, self._environment(run, event, job.causation))
            if outcome == "succeeded" and self.config.publish_replies:
                await self._reply(run, event, job.causation)
            # Set last: a run shown finished has its reply published (or its error recorded).
            run.status = outcome
        except asyncio.CancelledError:
            run.status = "interrupted"
            run.error = "the server stopped during the run"
            raise
        finally:
            if run.status not in FINISHED:  # an unexpected error: never leave a run shown running
                run.status = "error"
                run.error = run.error or "the run failed unexpectedly; see the server's log"
            run.finished_at = datetime.now(UTC)
            await asyncio.shield(self._history.record(run))

    async def _execute(self, run: ClaudeRun, prompt: str, env: dict[str, str]) -> RunStatus:
        """Run the command; fill in exit code, output and error; return the run's outcome."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.config.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.config.workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            run.error = f"cannot start {shlex.join(self.config.command)}: {exc}"
            return "error"
        outputs = asyncio.gather(
            _read_capped(proc.stdout, self.config.output_cap), _read_capped(proc.stderr, self.config.output_cap)
        )
        try:
            async with asyncio.timeout(self.config.timeout):
                await self._feed(proc, prompt)
                await proc.wait()
                # Shielded: on a timeout the readers must survive to hand over what they read.
                (out, out_cut), (err, _) = await asyncio.shield(outputs)
        except TimeoutError:
            await self._kill(proc)
            (out, out_cut), (err, _) = await self._leftovers(outputs)
            status: RunStatus = "timeout"
            run.error = f"killed after {self.config.timeout:g}s"
        except asyncio.CancelledError:
            await self._kill(proc)
            outputs.cancel()
            raise
        else:
            status = "succeeded" if proc.returncode == 0 else "failed"
        run.exit_code = proc.returncode
        run.output = out.decode(errors="replace")
        run.stderr = err.decode(errors="replace")
        run.output_truncated = out_cut
        return status

    @staticmethod
    async def _feed(proc: asyncio.subprocess.Process, prompt: str) -> None:
        if proc.stdin is None:
            return
        # A command that does not read its input may exit first: that is its business.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(prompt.encode())
            await proc.stdin.drain()
            proc.stdin.close()

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        _signal_group(proc, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.config.kill_grace):
                await proc.wait()
        except TimeoutError:
            _signal_group(proc, signal.SIGKILL)
            await proc.wait()
        _signal_group(proc, signal.SIGKILL)  # whatever of the group survived its leader

    @staticmethod
    async def _leftovers(outputs: asyncio.Future[tuple[_Read, _Read]]) -> tuple[_Read, _Read]:
        try:
            async with asyncio.timeout(1.0):
                return await outputs
        except TimeoutError:
            # A grandchild that left the process group still holds the pipes.
            return (b"", False), (b"", False)

    async def _reply(self, run: ClaudeRun, event: Event, causation: str | None = None) -> None:
        content = run.output.strip()
        if not content or self._publish is None:
            return
        try:
            reply = reply_event(event, content, causation=causation)
            await self._publish(reply)
        except TurbohooksError as exc:  # a refused reply or PublishError: recorded on the run, not fatal
            run.error = f"reply not published: {exc}"
            return
        run.reply_event_id = str(reply.event_id)
