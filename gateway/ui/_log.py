"""The delivery log (filters, pages, each delivery's attempts, retry) and a subscription's replay.

The log's rows come from the store's own queries (``engine.deliveries``); the
entity filter, which the log has no column for, reads the events of that
entity from the stream and shows their deliveries. Retry and replay are the
operations the API runs; a real replay runs as a task of this process whose
progress the page polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, cast

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template

from consumers import DeliveryStatus, Engine
from streams import ConflictError, EventValidationError, decode_event

from ..api._params import EngineDep
from ..operations import (
    ALL_SUBJECTS,
    ReplayRange,
    ReplayResult,
    read_backward,
    replay_subscription,
    retry_delivery,
    stream_bounds,
)
from ._common import form_values, render, when_or_none
from ._queries import deliveries_of_events

__all__ = ("HANDLERS",)

_BASE: Final = "/settings/webhooks"
_PAGE: Final = 25
_STATUSES: Final = ("pending", "success", "failed")
_ENTITY_SCAN: Final = 5_000
"""Events the entity filter reads at most, newest first."""
_JOBS_STATE: Final = "ui_replay_jobs"


@dataclass(slots=True)
class _Filters:
    subscription_id: uuid.UUID | None = None
    status: str | None = None
    event_type: str | None = None
    since: str = ""
    until: str = ""
    entity_id: str = ""
    page: int = 1
    errors: dict[str, str] = field(default_factory=dict)

    def query(self, page: int | None = None) -> str:
        from urllib.parse import urlencode

        values = {
            "subscription_id": self.subscription_id or "",
            "status": self.status or "",
            "event_type": self.event_type or "",
            "since": self.since,
            "until": self.until,
            "entity_id": self.entity_id,
            "page": page or self.page,
        }
        return urlencode({k: v for k, v in values.items() if v})


def _filters(request: Request[Any, Any, Any]) -> _Filters:
    params = request.query_params
    found = _Filters(
        status=params.get("status") or None,
        event_type=(params.get("event_type") or "").strip() or None,
        since=(params.get("since") or "").strip(),
        until=(params.get("until") or "").strip(),
        entity_id=(params.get("entity_id") or "").strip(),
    )
    if found.status not in (None, *_STATUSES):
        found.errors["status"] = f"is one of {', '.join(_STATUSES)}"
        found.status = None
    raw_sub = params.get("subscription_id") or ""
    if raw_sub:
        try:
            found.subscription_id = uuid.UUID(raw_sub)
        except ValueError:
            found.errors["subscription_id"] = "is not a subscription id"
    with contextlib.suppress(ValueError):
        found.page = max(1, int(params.get("page") or 1))
    return found


async def _entity_events(engine: Engine, entity_id: str) -> list[uuid.UUID]:
    js, stream = engine.js, engine.settings.stream_name
    bounds = await stream_bounds(js, stream)
    ids: list[uuid.UUID] = []
    scanned = 0
    reader = read_backward(js, stream, ALL_SUBJECTS, first=bounds.first, last=bounds.last, max_window=1024)
    async with contextlib.aclosing(reader) as messages:
        async for msg in messages:
            scanned += 1
            with contextlib.suppress(EventValidationError):
                event = decode_event(msg.data)
                if event.entity_id == entity_id:
                    ids.append(event.event_id)
            if scanned >= _ENTITY_SCAN:
                break
    return ids


async def _rows(engine: Engine, found: _Filters) -> tuple[list[Any], int]:
    try:
        since = when_or_none(found.since, "since")
        until = when_or_none(found.until, "until")
    except EventValidationError as exc:
        found.errors[exc.field] = exc.problem
        return [], 0
    status = cast(DeliveryStatus | None, found.status)
    if found.entity_id:
        items = await deliveries_of_events(
            engine, await _entity_events(engine, found.entity_id), subscription_id=found.subscription_id
        )
        items = [
            d
            for d in items
            if (status is None or d.status == status)
            and (found.event_type is None or d.event_type == found.event_type)
            and (since is None or d.created_at >= since)
            and (until is None or d.created_at < until)
        ]
        start = (found.page - 1) * _PAGE
        return items[start : start + _PAGE], len(items)
    query: dict[str, Any] = {
        "subscription_id": found.subscription_id,
        "status": status,
        "event_type": found.event_type,
        "since": since,
        "until": until,
    }
    items = await engine.deliveries.list(**query, limit=_PAGE, offset=(found.page - 1) * _PAGE)
    return items, await engine.deliveries.count(**query)


async def _names(engine: Engine) -> dict[uuid.UUID, str]:
    return {sub.id: sub.name for sub in await engine.subscriptions.list(limit=500)}


@get(_BASE + "/deliveries", name="ui-deliveries")
async def deliveries_page(request: Request[Any, Any, Any], engine: EngineDep) -> Template:
    found = _filters(request)
    items, total = await _rows(engine, found)
    names = await _names(engine)
    template = "_deliveries_table.html.j2" if request.headers.get("hx-request") else "deliveries.html.j2"
    return render(
        template,
        request,
        active="deliveries",
        items=items,
        total=total,
        filters=found,
        names=names,
        statuses=_STATUSES,
        page_size=_PAGE,
        pages=max(1, -(-total // _PAGE)),
    )


@get(_BASE + "/deliveries/{delivery_id:uuid}", name="ui-delivery")
async def delivery_page(
    request: Request[Any, Any, Any], engine: EngineDep, delivery_id: FromPath[uuid.UUID]
) -> Template:
    detail = await engine.deliveries.get(delivery_id)
    sub = await engine.service.get(detail.subscription_id)
    template = "_attempts.html.j2" if request.headers.get("hx-request") else "delivery.html.j2"
    return render(
        template,
        request,
        active="deliveries",
        d=detail,
        sub=sub,
        done=request.query_params.get("done"),
        error=None,
    )


@post(_BASE + "/deliveries/{delivery_id:uuid}/retry", name="ui-delivery-retry")
async def retry(request: Request[Any, Any, Any], engine: EngineDep, delivery_id: FromPath[uuid.UUID]) -> Template:
    error = None
    try:
        await retry_delivery(engine, delivery_id)
    except ConflictError as exc:
        error = str(exc)
    detail = await engine.deliveries.get(delivery_id)
    sub = await engine.service.get(detail.subscription_id)
    return render(
        "delivery.html.j2",
        request,
        active="deliveries",
        d=detail,
        sub=sub,
        done=None if error else "retry queued: the next attempt appears below once a worker made it",
        error=error,
        status_code=409 if error else 200,
    )


# --- replay -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ReplayJob:
    """A real replay running in this process."""

    id: str
    subscription_id: uuid.UUID
    done: int = 0
    planned: int = 0
    result: ReplayResult | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None


def _jobs(state: State) -> dict[str, ReplayJob]:
    jobs: dict[str, ReplayJob] | None = state.get(_JOBS_STATE)
    if jobs is None:
        jobs = {}
        state[_JOBS_STATE] = jobs
    return jobs


def _range(values: dict[str, Any], dry_run: bool) -> ReplayRange:
    patterns = [p.strip() for p in str(values.get("event_types", "") or "").split(",") if p.strip()]
    if isinstance(values.get("event_types"), list):
        patterns = [str(p).strip() for p in values["event_types"] if str(p).strip()]
    return ReplayRange(
        since=when_or_none(str(values.get("since", "")), "since"),
        until=when_or_none(str(values.get("until", "")), "until"),
        event_types=patterns or None,
        dry_run=dry_run,
    )


@post(_BASE + "/{subscription_id:uuid}/replay", name="ui-replay")
async def replay(request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> Template:
    values = await form_values(request)
    sub = await engine.service.get(subscription_id)
    dry_run = values.get("mode") != "run"
    try:
        spec = _range(values, dry_run)
        spec.check()
        if dry_run:
            result = await replay_subscription(engine, sub, spec)
            return render("_replay.html.j2", request, sub=sub, preview=result, job=None, error=None)
        if sub.status != "active":
            raise ConflictError(f"subscription {sub.name} is {sub.status}: resume it before you replay")
    except (EventValidationError, ConflictError) as exc:
        return render("_replay.html.j2", request, sub=sub, preview=None, job=None, error=str(exc), status_code=422)
    job = ReplayJob(id=uuid.uuid4().hex, subscription_id=sub.id)

    def progress(done: int, planned: int) -> None:
        job.done, job.planned = done, planned

    async def run() -> None:
        try:
            job.result = await replay_subscription(engine, sub, spec, progress=progress)
            job.done = job.planned = job.result.queued
        except Exception as exc:  # noqa: BLE001 — shown on the page, which is the point of the job
            job.error = str(exc) or type(exc).__name__

    job.task = asyncio.create_task(run(), name=f"ui-replay-{job.id}")
    _jobs(request.app.state)[job.id] = job
    return render("_replay.html.j2", request, sub=sub, preview=None, job=job, error=None)


@get(_BASE + "/{subscription_id:uuid}/replay/{job_id:str}", name="ui-replay-progress")
async def replay_progress(
    request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID], job_id: FromPath[str]
) -> Template:
    sub = await engine.service.get(subscription_id)
    job = _jobs(request.app.state).get(job_id)
    error = None if job is not None else "this replay is not known to this gateway (it was restarted?)"
    return render("_replay.html.j2", request, sub=sub, preview=None, job=job, error=error)


HANDLERS: Final = (deliveries_page, delivery_page, retry, replay, replay_progress)
