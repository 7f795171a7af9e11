"""``/settings/webhooks``: the subscriptions table, create and edit forms, and each subscription's actions.

Every change goes through the engine's ``SubscriptionService`` and every
action through :mod:`gateway.operations`, exactly as the API's routes do.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from consumers import Engine, Subscription, SubscriptionPatch
from consumers.secrets import masked
from integrations import INTEGRATIONS
from streams import ConflictError, EventValidationError

from ..api._params import EngineDep
from ..operations import preview, read_health, recover_failed, send_test_event, subscription_health
from ._common import form_values, render, when_or_none
from ._forms import (
    SubscriptionForm,
    catalog_groups,
    config_fields,
    create_body,
    draft_body,
    errors_of,
    patch_body,
    read_form,
)
from ._queries import subscription_figures

__all__ = ("HANDLERS",)

_BASE: Final = "/settings/webhooks"
_ID: Final = _BASE + "/{subscription_id:uuid}"
_WINDOW: Final = timedelta(hours=24)
_PREVIEW_EVENTS: Final = 20
"""Stored events the form's preview runs the draft on (the API and CLI take up to 1000)."""


async def _all(engine: Engine) -> list[Subscription]:
    subs: list[Subscription] = []
    while True:
        page = await engine.subscriptions.list(limit=500, offset=len(subs))
        subs.extend(page)
        if len(page) < 500:
            return subs


@get(_BASE, name="ui-subscriptions")
async def subscriptions_page(request: Request[Any, Any, Any], engine: EngineDep) -> Template:
    subs = await _all(engine)
    figures = await subscription_figures(engine, datetime.now(UTC) - _WINDOW)
    health = {h.subscription_id: h for h in await read_health(engine)}
    rows = [{"sub": sub, "fig": figures.get(sub.id), "health": health.get(sub.id)} for sub in subs]
    return render(
        "subscriptions.html.j2", request, active="subscriptions", rows=rows, done=request.query_params.get("done")
    )


def _form_page(
    request: Request[Any, Any, Any],
    form: SubscriptionForm,
    *,
    errors: dict[str, str] | None = None,
    sub: Subscription | None = None,
    status_code: int = 200,
) -> Template:
    return render(
        "subscription_form.html.j2",
        request,
        active="subscriptions",
        form=form,
        errors=errors or {},
        sub=sub,
        groups=catalog_groups(),
        integrations=list(INTEGRATIONS),
        config_fields=config_fields(),
        status_code=status_code,
    )


@get(_BASE + "/new", name="ui-subscription-new")
async def new_subscription(request: Request[Any, Any, Any]) -> Template:
    return _form_page(request, SubscriptionForm())


@post(_BASE + "/new", name="ui-subscription-create")
async def create_subscription(request: Request[Any, Any, Any], engine: EngineDep) -> Template:
    form = read_form(await form_values(request))
    errors: dict[str, str] = {}
    body = create_body(form, errors)
    if body is not None:
        try:
            created = await engine.service.create(body)
        except (EventValidationError, ConflictError) as exc:
            errors = errors_of(exc)
        else:
            return await _detail(request, engine, created, secret=created.secret, done="created")
    return _form_page(request, form, errors=errors, status_code=422)


@post(_BASE + "/preview", name="ui-subscription-preview")
async def preview_draft(request: Request[Any, Any, Any], engine: EngineDep) -> Template:
    """The form's draft run on the newest stored events (an htmx fragment); nothing is saved."""
    form = read_form(await form_values(request))
    errors: dict[str, str] = {}
    draft = draft_body(form, errors, limit=_PREVIEW_EVENTS)
    result = None
    if draft is not None:
        try:
            result = await preview(engine, draft)
        except (EventValidationError, ConflictError) as exc:
            errors = errors_of(exc)
    return render("_preview.html.j2", request, result=result, errors=errors)


async def _detail(
    request: Request[Any, Any, Any],
    engine: Engine,
    sub: Subscription,
    *,
    secret: str | None = None,
    done: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    figures = (await subscription_figures(engine, datetime.now(UTC) - _WINDOW)).get(sub.id)
    health = await subscription_health(engine, sub)
    recent = await engine.deliveries.list(subscription_id=sub.id, limit=10)
    return render(
        "subscription.html.j2",
        request,
        active="subscriptions",
        # Header values and credentials masked (issue 17), but on the page that shows the new secret once.
        sub=sub if secret else masked(sub),
        fig=figures,
        health=health,
        recent=recent,
        secret=secret,
        done=done or request.query_params.get("done"),
        error=error,
        status_code=status_code,
    )


@get(_ID, name="ui-subscription")
async def subscription_page(
    request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID]
) -> Template:
    return await _detail(request, engine, await engine.service.get(subscription_id))


@get(_ID + "/edit", name="ui-subscription-edit")
async def edit_subscription(
    request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID]
) -> Template:
    sub = await engine.service.get(subscription_id)
    # Masked values sent back unchanged keep the stored ones (SubscriptionService.update).
    return _form_page(request, SubscriptionForm.of(masked(sub)), sub=sub)


@post(_ID + "/edit", name="ui-subscription-update")
async def update_subscription(
    request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID]
) -> Template | Redirect:
    sub = await engine.service.get(subscription_id)
    form = read_form(await form_values(request))
    errors: dict[str, str] = {}
    body = patch_body(form, sub.integration, errors)
    if body is not None:
        try:
            await engine.service.update(sub.id, body)
        except (EventValidationError, ConflictError) as exc:
            errors = errors_of(exc)
        else:
            return Redirect(f"{_BASE}/{sub.id}?done=saved", status_code=303)
    return _form_page(request, form, errors=errors, sub=sub, status_code=422)


async def _set_active(engine: Engine, subscription_id: uuid.UUID, active: bool) -> Redirect:
    await engine.service.update(subscription_id, SubscriptionPatch(active=active))
    return Redirect(f"{_BASE}/{subscription_id}?done={'resumed' if active else 'paused'}", status_code=303)


@post(_ID + "/pause", name="ui-subscription-pause")
async def pause(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> Redirect:
    return await _set_active(engine, subscription_id, False)


@post(_ID + "/resume", name="ui-subscription-resume")
async def resume(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> Redirect:
    return await _set_active(engine, subscription_id, True)


@post(_ID + "/delete", name="ui-subscription-delete")
async def delete(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> Redirect:
    await engine.service.delete(subscription_id)
    return Redirect(f"{_BASE}?done=deleted", status_code=303)


@post(_ID + "/rotate-secret", name="ui-subscription-rotate")
async def rotate(request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> Template:
    rotated = await engine.service.rotate_secret(subscription_id)
    return await _detail(request, engine, rotated, secret=rotated.secret, done="rotated")


@post(_ID + "/test", name="ui-subscription-test")
async def test_send(
    request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID]
) -> Template:
    try:
        result = await send_test_event(engine, subscription_id)
    except EventValidationError as exc:
        return render("_test_result.html.j2", request, result=None, error=str(exc))
    return render("_test_result.html.j2", request, result=result, error=None)


@post(_ID + "/recover", name="ui-subscription-recover")
async def recover(request: Request[Any, Any, Any], engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> Template:
    values = await form_values(request)
    sub = await engine.service.get(subscription_id)
    try:
        since = when_or_none(str(values.get("since", "")), "since")
        if since is None:
            raise EventValidationError("since", "give a time or a duration before now (24h)")
        result = await recover_failed(engine, sub.id, since)
    except (EventValidationError, ConflictError) as exc:
        return await _detail(request, engine, sub, error=str(exc), status_code=422)
    more = " (more remain: recover again)" if result.truncated else ""
    return await _detail(request, engine, sub, done=f"recover queued {result.queued} failed deliveries{more}")


HANDLERS: Final = (
    subscriptions_page,
    new_subscription,
    create_subscription,
    preview_draft,
    subscription_page,
    edit_subscription,
    update_subscription,
    pause,
    resume,
    delete,
    rotate,
    test_send,
    recover,
)
