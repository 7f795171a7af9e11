"""The receiving side of the Claude integration: ``turbohooks claude-server``.

A small aiohttp server (the design's ``scripts/claude_webhook_server.py``):

* ``POST /webhook/comment`` (also ``/webhook`` and ``/``) verifies the
  Standard Webhooks signature (401 otherwise), skips events whose actor is an
  AI, drops a redelivered ``webhook-id``, and queues a *run*: the configured
  command line (``claude -p`` by default) with a prompt built from the event,
  its ``prompt_context`` and, when ``CLAUDE_ISSUE_CONTEXT_URL`` is set, the
  issue fetched from Turbo, on its standard input. It answers 202 at once: a
  run takes minutes, a webhook attempt seconds.
* One run per issue at a time: later events for the same issue wait in its
  queue, in arrival order; runs for different issues go side by side, up to
  ``CLAUDE_MAX_CONCURRENT``.
* A run that outlives ``CLAUDE_TIMEOUT`` is killed (SIGTERM to its process
  group, SIGKILL after a grace period).
* Every state change of a run is appended to ``<data dir>/claude-runs.jsonl``
  and kept in memory; ``GET /runs`` and ``GET /runs/{run_id}`` show them. Runs
  a restart interrupted are marked ``interrupted``, not re-run (the agent may
  have acted already).

The command gets ``TURBO_EVENT_ID``, ``TURBO_EVENT_TYPE``, ``TURBO_ISSUE_ID``,
``TURBO_CAUSATION_ID`` and ``TURBO_ACTOR_TYPE=ai`` in its environment, so
whatever it posts back to Turbo can carry the causation chain and the ``ai``
actor. With ``CLAUDE_PUBLISH_REPLIES=true`` the server itself publishes the
run's output as the reply comment (:func:`~integrations.reply_event`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp import web

from streams import ConfigError, Event, EventValidationError, TurbohooksError, decode_event, parse_duration

from ._claude import issue_id_of, reply_event
from ._render import describe, plain_text, truncate

__all__ = ("ClaudeRun", "ClaudeServer", "ClaudeServerConfig", "RunStatus", "build_prompt")

_log = logging.getLogger("turbohooks.claude_server")

RunStatus = Literal["queued", "running", "succeeded", "failed", "timeout", "error", "interrupted"]
Publish = Callable[[Event], Awaitable[object]]
_Read = tuple[bytes, bool]

_FINISHED: Final = frozenset({"succeeded", "failed", "timeout", "error", "interrupted"})
_SEEN_CAP: Final = 10_000
_CONTEXT_CAP: Final = 20_000
_CONTEXT_TIMEOUT: Final = 10.0
_READ_CHUNK: Final = 65536
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


def _bool(variable: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(variable, f"{text!r} is not a boolean; write true or false")


class ClaudeServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of ``turbohooks claude-server``; :meth:`from_env` reads the ``CLAUDE_*`` variables."""

    secrets: tuple[str, ...]
    """``CLAUDE_WEBHOOK_SECRET`` (``--secret``): the subscription's ``whsec_`` secret (comma-separated: several)."""
    command: tuple[str, ...] = ("claude", "-p")
    """``CLAUDE_COMMAND``: the command line; the prompt arrives on its standard input."""
    host: str = "127.0.0.1"
    port: int = 9000
    timeout: float = 600.0
    """``CLAUDE_TIMEOUT``: a run older than this is killed."""
    kill_grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL of a run that timed out."""
    max_concurrent: int = 2
    """``CLAUDE_MAX_CONCURRENT``: runs at once, across issues."""
    data_dir: Path = Path(".turbohooks")
    """Where ``claude-runs.jsonl`` is kept (``TURBOHOOKS_DATA_DIR``)."""
    workdir: Path | None = None
    """``CLAUDE_WORKDIR``: the command's working directory (the repository Claude works in)."""
    issue_context_url: str | None = None
    """``CLAUDE_ISSUE_CONTEXT_URL``: fetched into the prompt, ``{issue_id}`` replaced: ``http://localhost:8001/api/v1/issues/{issue_id}``."""
    publish_replies: bool = False
    """``CLAUDE_PUBLISH_REPLIES``: publish a successful run's output as the AI's ``comment.created``."""
    output_cap: int = 65536
    """Bytes of standard output (and of standard error) kept per run."""
    history: int = 1000
    """Runs kept in memory for ``GET /runs``."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / "claude-runs.jsonl"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClaudeServerConfig:
        """Read the ``CLAUDE_*`` variables; ``overrides`` (command-line options) win; :class:`ConfigError` if bad."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if secret := env.get("CLAUDE_WEBHOOK_SECRET", "").strip():
            values["secrets"] = tuple(s.strip() for s in secret.split(",") if s.strip())
        if command := env.get("CLAUDE_COMMAND", "").strip():
            values["command"] = tuple(shlex.split(command))
        if text := env.get("CLAUDE_TIMEOUT", "").strip():
            try:
                values["timeout"] = parse_duration(text)
            except ValueError as exc:
                raise ConfigError("CLAUDE_TIMEOUT", str(exc)) from None
        if text := env.get("CLAUDE_MAX_CONCURRENT", "").strip():
            if not text.isdigit() or int(text) < 1:
                raise ConfigError("CLAUDE_MAX_CONCURRENT", f"{text!r} is not a whole number of at least 1")
            values["max_concurrent"] = int(text)
        if text := env.get("CLAUDE_WORKDIR", "").strip():
            values["workdir"] = Path(text)
        if text := env.get("CLAUDE_ISSUE_CONTEXT_URL", "").strip():
            values["issue_context_url"] = text
        if "CLAUDE_PUBLISH_REPLIES" in env:
            values["publish_replies"] = _bool("CLAUDE_PUBLISH_REPLIES", env["CLAUDE_PUBLISH_REPLIES"])
        if text := env.get("TURBOHOOKS_DATA_DIR", "").strip():
            values["data_dir"] = Path(text)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._checked(values)

    @classmethod
    def _checked(cls, values: dict[str, Any]) -> ClaudeServerConfig:
        from consumers._signing import secret_bytes  # consumers imports integrations: import it when used

        secrets = values.get("secrets") or ()
        if isinstance(secrets, str):
            secrets = tuple(s.strip() for s in secrets.split(",") if s.strip())
        if not secrets:
            raise ConfigError("CLAUDE_WEBHOOK_SECRET", "is required: the whsec_ secret of the Claude subscription")
        for secret in secrets:
            try:
                secret_bytes(secret)
            except EventValidationError as exc:
                raise ConfigError("CLAUDE_WEBHOOK_SECRET", exc.problem) from None
        values["secrets"] = tuple(secrets)
        if isinstance(values.get("command"), str):
            values["command"] = tuple(shlex.split(values["command"]))
        if not values.get("command", ("claude",)):
            raise ConfigError("CLAUDE_COMMAND", "is empty")
        if values.get("timeout", 1) <= 0:
            raise ConfigError("CLAUDE_TIMEOUT", "must be greater than zero")
        template = values.get("issue_context_url")
        if template is not None and not str(template).startswith(("http://", "https://")):
            raise ConfigError("CLAUDE_ISSUE_CONTEXT_URL", f"{template!r} is not an http(s):// URL")
        return cls(**values)


def build_prompt(event: Event, context: Mapping[str, Any], issue_context: str | None) -> str:
    """The prompt of one run: what happened, the comment, the issue, and what to do."""
    facts = describe(event)
    issue_id = context.get("issue_id") or issue_id_of(event)
    parts = [
        "You are Claude Code, called by Turbo (the project tracker) through a webhook.",
        "",
        plain_text(facts),
    ]
    comment = context.get("comment")
    if not isinstance(comment, str) and event.entity_type == "comment":
        comment = event.data.current.get("content")  # sent without prompt_context (an older sender)
    if isinstance(comment, str) and comment.strip():
        parts += ["", "The comment:", "<comment>", comment.strip(), "</comment>"]
    if issue_context:
        parts += ["", f"Issue {issue_id} as Turbo has it now:", "<issue>", issue_context, "</issue>"]
    instructions = context.get("instructions")
    if isinstance(instructions, str) and instructions.strip():
        parts += ["", instructions.strip()]
    if issue_id:
        parts += [
            "",
            f"Read issue {issue_id} and its comments, do what is asked if you can, and answer with one comment on "
            f"issue {issue_id}. Write the answer as your final output.",
        ]
    return "\n".join(parts) + "\n"


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


class _Job(msgspec.Struct):
    run: ClaudeRun
    event: Event
    context: dict[str, Any]


class ClaudeServer:
    """The server, as an async context manager: listening on enter, runs stopped on exit.

    ``publish`` sends a reply event (an :class:`~publishers.EventPublisher`'s
    ``publish``); it is only used with ``publish_replies``.
    """

    def __init__(self, config: ClaudeServerConfig, *, publish: Publish | None = None) -> None:
        self.config = config
        self._publish = publish
        self.runs: OrderedDict[str, ClaudeRun] = OrderedDict()
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._queues: dict[str, deque[_Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, str] = {}
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._log_lock = asyncio.Lock()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def app(self) -> web.Application:
        """The aiohttp application (routes only; :meth:`__aenter__` serves it)."""
        app = web.Application(client_max_size=4 << 20)
        for path in ("/webhook/comment", "/webhook", "/"):
            app.router.add_post(path, self._receive)
        app.router.add_get("/runs", self._list_runs)
        app.router.add_get("/runs/{run_id}", self._get_run)
        app.router.add_get("/health", self._health)
        return app

    async def __aenter__(self) -> Self:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._load_history)
        if self.config.issue_context_url:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_CONTEXT_TIMEOUT))
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._queues.values():
            for job in queue:
                job.run.status = "interrupted"
                await self._record(job.run)
        self._queues.clear()
        if self._http is not None:
            await self._http.close()

    # -- history -----------------------------------------------------------

    def _load_history(self) -> None:
        path = self.config.log_path
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
            if run.status not in _FINISHED:
                run.status = "interrupted"
                run.error = "the server stopped before the run finished"
                interrupted.append(run)
            self._seen[run.webhook_id] = run.run_id
        self.runs = OrderedDict(list(latest.items())[-self.config.history :])
        if interrupted:
            with path.open("ab") as log:
                log.write(b"".join(_encoder.encode(run) + b"\n" for run in interrupted))

    def _append(self, line: bytes) -> None:
        with self.config.log_path.open("ab") as log:
            log.write(line)

    async def _record(self, run: ClaudeRun) -> None:
        self.runs[run.run_id] = run
        self.runs.move_to_end(run.run_id)
        while len(self.runs) > self.config.history:
            self.runs.popitem(last=False)
        async with self._log_lock:
            await asyncio.to_thread(self._append, _encoder.encode(run) + b"\n")

    # -- HTTP ----------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        from consumers._signing import SignatureError, verify  # consumers imports integrations

        body = await request.read()
        try:
            verify(list(self.config.secrets), request.headers, body)
        except SignatureError as exc:
            return web.json_response({"error": f"signature: {exc}"}, status=401)
        try:
            event = decode_event(body)
            envelope = msgspec.json.decode(body)
        except (EventValidationError, msgspec.DecodeError) as exc:
            return web.json_response({"error": f"not a Turbo event: {exc}"}, status=400)
        if event.actor.type == "ai":
            # The integration never sends these; a second guard costs nothing.
            return web.json_response({"skipped": "the event's actor is an AI"})
        webhook_id = request.headers["webhook-id"]
        if (known := self._seen.get(webhook_id)) is not None:
            return web.json_response({"duplicate": True, "run_id": known})
        context = envelope.get("prompt_context") if isinstance(envelope, dict) else None
        issue = issue_id_of(event) or f"{event.entity_type}:{event.entity_id}"
        run = ClaudeRun(
            run_id=uuid.uuid4().hex,
            webhook_id=webhook_id,
            event_id=str(event.event_id),
            event_type=event.event_type,
            issue=issue,
            queued_at=datetime.now(UTC),
        )
        self._seen[webhook_id] = run.run_id
        while len(self._seen) > _SEEN_CAP:
            self._seen.popitem(last=False)
        ahead = len(self._queues.get(issue, ())) + (issue in self._running)
        await self._record(run)
        self._enqueue(_Job(run, event, context if isinstance(context, dict) else {}))
        return web.json_response({"run_id": run.run_id, "issue": issue, "ahead": ahead}, status=202)

    async def _list_runs(self, request: web.Request) -> web.Response:
        issue = request.query.get("issue")
        status = request.query.get("status")
        try:
            limit = max(1, min(int(request.query.get("limit", "100")), self.config.history))
        except ValueError:
            return web.json_response({"error": "limit: not a whole number"}, status=400)
        runs = [
            r
            for r in reversed(self.runs.values())
            if (issue is None or r.issue == issue) and (status is None or r.status == status)
        ]
        return web.Response(body=_encoder.encode({"runs": runs[:limit]}), content_type="application/json")

    async def _get_run(self, request: web.Request) -> web.Response:
        run = self.runs.get(request.match_info["run_id"])
        if run is None:
            return web.json_response({"error": "no such run"}, status=404)
        return web.Response(body=_encoder.encode(run), content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        queued = sum(len(q) for q in self._queues.values())
        return web.json_response({"status": "ok", "running": len(self._running), "queued": queued})

    # -- runs ----------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
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

    def _environment(self, run: ClaudeRun, event: Event) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CLAUDE_WEBHOOK_SECRET"}  # the agent needs no secret
        env.update(
            TURBO_EVENT_ID=str(event.event_id),
            TURBO_EVENT_TYPE=event.event_type,
            TURBO_ISSUE_ID=issue_id_of(event) or "",
            TURBO_CAUSATION_ID=str(event.event_id),
            TURBO_ACTOR_TYPE="ai",
            TURBO_RUN_ID=run.run_id,
        )
        return env

    async def _run(self, job: _Job) -> None:
        run, event = job.run, job.event
        run.status = "running"
        run.started_at = datetime.now(UTC)
        await self._record(run)
        try:
            prompt = build_prompt(event, job.context, await self._issue_context(issue_id_of(event)))
            outcome = await self._execute(run, prompt, self._environment(run, event))
            if outcome == "succeeded" and self.config.publish_replies:
                await self._reply(run, event)
            # Set last: a run shown finished has its reply published (or its error recorded).
            run.status = outcome
        except asyncio.CancelledError:
            run.status = "interrupted"
            run.error = "the server stopped during the run"
            raise
        finally:
            if run.status not in _FINISHED:  # an unexpected error: never leave a run shown running
                run.status = "error"
                run.error = run.error or "the run failed unexpectedly; see the server's log"
            run.finished_at = datetime.now(UTC)
            await asyncio.shield(self._record(run))

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

    async def _reply(self, run: ClaudeRun, event: Event) -> None:
        content = run.output.strip()
        if not content or self._publish is None:
            return
        try:
            reply = reply_event(event, content)
            await self._publish(reply)
        except TurbohooksError as exc:  # a refused reply or PublishError: recorded on the run, not fatal
            run.error = f"reply not published: {exc}"
            return
        run.reply_event_id = str(reply.event_id)
