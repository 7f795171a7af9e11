"""The alerts: conditions on the health figures, each raised once and cleared once, as events.

An alert is raised as ``system.health_check_failed`` when its condition starts and
cleared as ``system.health_check_recovered`` when it ends, so any subscription (Slack,
e-mail, a webhook) can route them like any other event. The alerts held now live in the
KV bucket ``turbohooks_alerts`` (one key per alert): a restarted evaluator neither raises
again what is held nor forgets to clear it, and two evaluators (two gateways) raise an
alert once between them (the key is created with a revision check). Each event's id is
derived from the alert's key and when it was raised, so a publication repeated after a
crash is stored once by JetStream's duplicate window.

The conditions (thresholds in :class:`~streams.settings.HealthSettings`):

* ``failure_rate``: more than ``TURBOHOOKS_ALERT_FAILURE_RATE`` % of a subscription's
  attempts failed in the window, out of at least ``TURBOHOOKS_ALERT_MIN_ATTEMPTS``;
* ``timeouts``: at least ``TURBOHOOKS_ALERT_TIMEOUTS`` attempts ran out of ``WEBHOOK_TIMEOUT``;
* ``auth_failures``: at least ``TURBOHOOKS_ALERT_AUTH_FAILURES`` answers were 401 or 403;
* ``dead_letters``: at least ``TURBOHOOKS_ALERT_DEAD_LETTERS`` deliveries went dead;
* ``lag``: an active subscription's oldest waiting event is older than ``TURBOHOOKS_ALERT_LAG``;
* ``process_silent``: a worker, recorder or scheduler stopped its heartbeat (:mod:`streams` ``_heartbeat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec
from nats.errors import Error as NatsError
from nats.js.errors import BadRequestError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue
from sqlalchemy.exc import SQLAlchemyError

from consumers import Engine
from consumers.log import SubscriptionWindow
from publishers.processors import label
from streams import TurbohooksError, open_bucket, silent_processes
from streams.settings import HealthSettings

from ._health import SubscriptionHealth, read_health

__all__ = ("ALERTS_BUCKET", "Alert", "AlertEvaluator", "AlertKind", "alert_conditions")

ALERTS_BUCKET: Final = "turbohooks_alerts"
RAISED_TYPE: Final = "system.health_check_failed"
CLEARED_TYPE: Final = "system.health_check_recovered"
_IDS: Final = uuid.UUID("5d0f3c8e-2a61-4d1b-9a57-3f4a9e0c7b21")
"""Namespace of the alert events' ids (uuid5 of the key and the time it was raised)."""

AlertKind = Literal["failure_rate", "timeouts", "auth_failures", "dead_letters", "lag", "process_silent"]

_log = logging.getLogger("turbohooks.alerts")


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert condition that holds now."""

    key: str
    """``<kind>.<subscription id hex>`` or ``process_silent.<process>``: one alert per key."""
    kind: AlertKind
    summary: str
    value: float
    threshold: float
    subscription_id: uuid.UUID | None = None
    subscription_name: str | None = None
    process: str | None = None


class _Held(msgspec.Struct, kw_only=True):
    """An alert raised and not cleared yet, as the bucket keeps it."""

    alert: Alert
    raised_at: datetime
    announced: bool = False
    """True once its ``system.health_check_failed`` was published."""


def alert_conditions(
    health: Iterable[SubscriptionHealth],
    windows: Mapping[uuid.UUID, SubscriptionWindow],
    settings: HealthSettings,
    silent: Mapping[str, float] | None = None,
) -> dict[str, Alert]:
    """Every alert whose condition holds, by key; ``windows`` are the log's figures over ``ALERT_WINDOW``.

    ``silent`` maps a process to the seconds since its last heartbeat (only those past the bound).
    """
    found: dict[str, Alert] = {}
    window = label(settings.alert_window)

    def add(kind: AlertKind, sub: SubscriptionHealth, summary: str, value: float, threshold: float) -> None:
        key = f"{kind}.{sub.subscription_id.hex}"
        found[key] = Alert(
            key=key,
            kind=kind,
            summary=f"{sub.name}: {summary}",
            value=value,
            threshold=threshold,
            subscription_id=sub.subscription_id,
            subscription_name=sub.name,
        )

    for sub in health:
        figures = windows.get(sub.subscription_id) or SubscriptionWindow()
        failed = figures.attempts - figures.success
        bound = settings.alert_failure_rate / 100
        if figures.attempts >= settings.alert_min_attempts and failed / figures.attempts > bound:
            rate = failed / figures.attempts
            add("failure_rate", sub, f"{rate:.0%} of {figures.attempts} attempts failed in {window}", rate, bound)
        if settings.alert_timeouts and figures.timeouts >= settings.alert_timeouts:
            add(
                "timeouts",
                sub,
                f"{figures.timeouts} attempts timed out in {window}",
                figures.timeouts,
                settings.alert_timeouts,
            )
        if settings.alert_auth_failures and figures.auth_failures >= settings.alert_auth_failures:
            add(
                "auth_failures",
                sub,
                f"the receiver refused {figures.auth_failures} requests (401/403) in {window}: check its credentials",
                figures.auth_failures,
                settings.alert_auth_failures,
            )
        if settings.alert_dead_letters and figures.dead >= settings.alert_dead_letters:
            add(
                "dead_letters",
                sub,
                f"{figures.dead} new dead letters in {window}",
                figures.dead,
                settings.alert_dead_letters,
            )
        oldest = sub.oldest_pending_seconds or 0.0
        if sub.status == "active" and oldest > settings.alert_lag:
            add("lag", sub, f"its oldest waiting event is {oldest:.0f}s old", oldest, settings.alert_lag)
    for process, seconds in (silent or {}).items():
        key = f"process_silent.{process}"
        found[key] = Alert(
            key=key,
            kind="process_silent",
            summary=f"{process} has not reported for {seconds:.0f}s",
            value=seconds,
            threshold=settings.alert_silence,
            process=process,
        )
    return found


class AlertEvaluator:
    """Evaluates the alerts every ``ALERT_INTERVAL`` and publishes each change once."""

    def __init__(self, engine: Engine, settings: HealthSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await open_bucket(
                self.engine.js, self.engine.settings, ALERTS_BUCKET, "turbohooks: alerts raised"
            )
        return self._kv

    async def held(self) -> dict[str, tuple[_Held, int]]:
        """The alerts raised and not cleared, with their bucket revision."""
        kv = await self._bucket()
        try:
            keys = await kv.keys()
        except NoKeysError:
            return {}
        held: dict[str, tuple[_Held, int]] = {}
        for key in keys:
            with contextlib.suppress(Exception):  # deleted meanwhile (another evaluator cleared it)
                entry = await kv.get(key)
                if entry.value:
                    held[key] = (msgspec.json.decode(entry.value, type=_Held), entry.revision or 0)
        return held

    async def _publish(self, state: _Held, cleared_at: datetime | None = None) -> None:
        alert = state.alert
        moment = "cleared" if cleared_at is not None else "raised"
        current: dict[str, object] = {
            "check": "alert",
            "alert": alert.kind,
            "alert_key": alert.key,
            "status": moment,
            "summary": alert.summary if cleared_at is None else f"resolved: {alert.summary}",
            "value": alert.value,
            "threshold": alert.threshold,
            "raised_at": state.raised_at.isoformat(),
        }
        if cleared_at is not None:
            current["cleared_at"] = cleared_at.isoformat()
        if alert.subscription_id is not None:
            current |= {"subscription_id": str(alert.subscription_id), "subscription_name": alert.subscription_name}
        if alert.process is not None:
            current["process"] = alert.process
        await self.engine.publisher.emit(
            event_type=CLEARED_TYPE if cleared_at is not None else RAISED_TYPE,
            entity_id=alert.key,
            data={"current": current},
            actor={"type": "system", "name": "turbohooks-alerts"},
            event_id=uuid.uuid5(_IDS, f"{moment}:{alert.key}:{state.raised_at.isoformat()}"),
        )

    async def _announce(self, kv: KeyValue, key: str, state: _Held, revision: int) -> int:
        await self._publish(state)
        state.announced = True
        return await kv.update(key, msgspec.json.encode(state), last=revision)

    async def evaluate(self) -> tuple[list[Alert], list[Alert]]:
        """One evaluation: the alerts raised and the alerts cleared by it."""
        now = datetime.now(UTC)
        kv = await self._bucket()
        health = await read_health(self.engine, limit=self.settings.metrics_subscriptions, log=False)
        windows = await self.engine.deliveries.subscription_windows(now - timedelta(seconds=self.settings.alert_window))
        silent = await silent_processes(self.engine.js, self.engine.settings, self.settings.alert_silence)
        current = alert_conditions(health, windows, self.settings, silent)
        held = await self.held()
        raised: list[Alert] = []
        cleared: list[Alert] = []
        for key, (state, revision) in list(held.items()):
            if not state.announced:  # raised by an evaluator stopped before it published
                with contextlib.suppress(KeyWrongLastSequenceError):
                    held[key] = (state, await self._announce(kv, key, state, revision))
        for key, alert in current.items():
            if key in held:
                continue
            state = _Held(alert=alert, raised_at=now)
            try:
                revision = await kv.create(key, msgspec.json.encode(state))
            except KeyWrongLastSequenceError:
                continue  # another evaluator raised it first
            await self._announce(kv, key, state, revision)
            raised.append(alert)
        for key, (state, revision) in held.items():
            if key in current:
                continue
            await self._publish(state, cleared_at=now)
            try:
                await kv.delete(key, last=revision)
            except BadRequestError as exc:
                # nats-py raises a delete's lost compare-and-set as a plain 400 (10071), not as
                # KeyWrongLastSequenceError: another evaluator changed or cleared it first.
                if not _lost_race(exc):
                    raise
            cleared.append(state.alert)
        for alert in raised:
            _log.warning("alert raised: %s", alert.summary)
        for alert in cleared:
            _log.warning("alert cleared: %s", alert.summary)
        return raised, cleared

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate until ``stop``; a failed evaluation (NATS or the database away) is logged and tried again."""
        while not stop.is_set():
            try:
                await self.evaluate()
            except (NatsError, TimeoutError, OSError, SQLAlchemyError, TurbohooksError) as exc:
                _log.warning("alerts: evaluation failed, trying again: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.alert_interval)


_WRONG_LAST_SEQUENCE: Final = 10071
"""JetStream's error code for a write whose expected last sequence no longer holds."""


def _lost_race(exc: BadRequestError) -> bool:
    """Whether a KV write failed only because another writer changed the key first."""
    return isinstance(exc, KeyWrongLastSequenceError) or exc.err_code == _WRONG_LAST_SEQUENCE
