"""What `turbohooks up` prints while it runs: failed and refused deliveries (rate-limited), and a status line.

It listens, in the same process, to the attempt batches the workers publish for
the recorder (a plain NATS subscription on ``turbohooks.attempts.>``: the
delivery path is not touched, and a successful delivery prints nothing). Only
the few fields it shows are decoded. The status line (subscriptions running,
events per second, deliveries ok / failed since the last line) comes every
``interval`` seconds while something happens, and is hidden by ``--quiet``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from rich.console import Console
from rich.markup import escape

from streams import ATTEMPTS_SUBJECT_ROOT, NATS_ERRORS, Settings

if TYPE_CHECKING:
    from consumers import SubscriptionRegistry

__all__ = ("FailureLog", "Monitor")

LINES_PER_WINDOW: Final = 3
"""Failure lines shown per subscription per window; the rest are counted."""
WINDOW: Final = 10.0
"""Seconds of the rate limit's window."""


class _Attempt(msgspec.Struct):
    """The fields shown of consumers' ``AttemptRecord`` (the others are skipped, not decoded)."""

    subscription_id: uuid.UUID
    outcome: str
    event_type: str = ""
    attempt: int = 1
    request_url: str = ""
    response_code: int | None = None
    error: str | None = None


class _Batch(msgspec.Struct):
    records: list[_Attempt]


_decode: Final = msgspec.json.Decoder(_Batch).decode


@dataclass
class _Window:
    started: float
    shown: int = 0
    hidden: int = 0


@dataclass
class FailureLog:
    """Rate-limited failure lines: ``limit`` per subscription per ``window`` seconds, then "… and K more"."""

    emit: Callable[[str], None]
    limit: int = LINES_PER_WINDOW
    window: float = WINDOW
    clock: Callable[[], float] = time.monotonic
    _windows: dict[uuid.UUID, _Window] = field(default_factory=dict)

    def failure(self, subscription: uuid.UUID, name: str, line: str) -> None:
        now = self.clock()
        current = self._windows.get(subscription)
        if current is None or now - current.started >= self.window:
            self._close(name, current)
            current = self._windows[subscription] = _Window(started=now)
        if current.shown < self.limit:
            current.shown += 1
            self.emit(line)
        else:
            current.hidden += 1

    def flush(self, names: Callable[[uuid.UUID], str]) -> None:
        """Say how many lines each ended window held back."""
        now = self.clock()
        for subscription, current in list(self._windows.items()):
            if now - current.started >= self.window:
                self._close(names(subscription), current)
                del self._windows[subscription]

    def _close(self, name: str, current: _Window | None) -> None:
        if current is not None and current.hidden:
            self.emit(f"… and {current.hidden} more failed deliveries of {name} in {self.window:g}s")


class Monitor:
    """Counts attempts and prints failures and a status line; :meth:`run` until ``stop``."""

    def __init__(
        self,
        settings: Settings,
        nc: NATS,
        console: Console,
        *,
        registry: SubscriptionRegistry | None = None,
        running: Callable[[], int] = lambda: 0,
        interval: float = 5.0,
        quiet: bool = False,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.console = console
        self.registry = registry
        self.running = running
        self.interval = interval
        self.quiet = quiet
        self.ok = 0
        self.failed = 0
        self._names: dict[uuid.UUID, str] = {}
        self.failures = FailureLog(emit=self._print)

    def _print(self, line: str) -> None:
        self.console.print(escape(line), highlight=False, soft_wrap=True)

    def _name(self, subscription: uuid.UUID) -> str:
        return self._names.get(subscription) or str(subscription)[:8]

    async def _lookup(self, subscription: uuid.UUID) -> None:
        if self.registry is None:
            return
        with contextlib.suppress(*NATS_ERRORS):
            sub = await self.registry.get(subscription)
            if sub is not None:
                self._names[subscription] = sub.name

    async def _on_batch(self, msg: Msg) -> None:
        try:
            records = _decode(msg.data).records
        except msgspec.ValidationError:
            return  # a shape this monitor does not know: the recorder still records it
        for record in records:
            if record.outcome == "success":
                self.ok += 1
                continue
            if record.outcome not in ("retrying", "failed"):
                continue  # an outcome this monitor does not know (not a failure it can describe)
            self.failed += 1
            sid = record.subscription_id
            if sid not in self._names:
                self._names[sid] = str(sid)[:8]  # if the registry does not answer
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lookup(sid), 1.0)  # once per subscription
            self.failures.failure(sid, self._name(sid), self._describe(record))

    def _describe(self, record: _Attempt) -> str:
        why = record.error or (f"HTTP {record.response_code}" if record.response_code else "failed")
        then = "retrying" if record.outcome == "retrying" else "not retried"
        if why.startswith("blocked:"):
            hint = "WEBHOOK_ALLOWED_HOSTS / WEBHOOK_ALLOW_HTTP, or TURBOHOOKS_ENV=development with the embedded server"
            return f"refused destination: {self._name(record.subscription_id)} → {record.request_url}: {why} ({hint})"
        return (
            f"delivery failed: {self._name(record.subscription_id)} {record.event_type} → {record.request_url}: "
            f"{why} (attempt {record.attempt}, {then})"
        )

    async def _events_seq(self) -> int | None:
        try:
            info = await self.nc.jetstream(timeout=2.0).stream_info(self.settings.stream_name)
        except NATS_ERRORS:  # a status line is never worth a crash (NATS down, stream gone)
            return None
        return info.state.last_seq

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.nc.subscribe(f"{ATTEMPTS_SUBJECT_ROOT}.>", cb=self._on_batch)
        try:
            last_seq = await self._events_seq()
            last_at = time.monotonic()
            last_line: tuple[int, int, int, int] | None = None
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
                self.failures.flush(self._name)
                if self.quiet or stop.is_set():
                    continue
                seq, now = await self._events_seq(), time.monotonic()
                events = max(0, seq - last_seq) if seq is not None and last_seq is not None else 0
                rate = events / max(now - last_at, 1e-6)
                last_seq, last_at = (seq if seq is not None else last_seq), now
                ok, failed, self.ok, self.failed = self.ok, self.failed, 0, 0
                line = (self.running(), events, ok, failed)
                if line == last_line and not (events or ok or failed):
                    continue  # idle: one line says so, not one every few seconds
                last_line = line
                self._print(
                    f"status: {line[0]} subscriptions running, {rate:.1f} events/s, "
                    f"deliveries {ok} ok / {failed} failed in the last {self.interval:g}s"
                )
        finally:
            with contextlib.suppress(*NATS_ERRORS):
                await sub.unsubscribe()
