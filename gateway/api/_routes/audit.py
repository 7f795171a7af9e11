"""``GET /api/audit``: the audit log of admin actions, newest first (who, when, what, on what, from where)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Router, get
from litestar.params import QueryParameter

from consumers import AuditEntry

from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._params import EngineDep, Limit, Offset
from .._problems import responses

__all__ = ("AuditPage", "router")


class AuditPage(msgspec.Struct, kw_only=True):
    """A page of the audit log, newest first."""

    items: list[AuditEntry]
    total: int
    limit: int
    offset: int


@get("/", summary="The audit log of admin actions, newest first", responses=responses(400, 503))
async def list_audit(
    engine: EngineDep,
    action: Annotated[
        str | None, QueryParameter(max_length=32, description="Only this action (`create`, `rotate`, `retry`, ...).")
    ] = None,
    target: Annotated[
        str | None, QueryParameter(max_length=200, description="Only this target (`subscription:<id>`, ...).")
    ] = None,
    actor: Annotated[
        str | None, QueryParameter(max_length=200, description="Only this actor (`token:<hash>`).")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AuditPage:
    if engine.audit is None:
        return AuditPage(items=[], total=0, limit=limit, offset=offset)
    items = await engine.audit.list(action=action, target=target, actor=actor, limit=limit, offset=offset)
    total = await engine.audit.count(action=action, target=target, actor=actor)
    return AuditPage(items=items, total=total, limit=limit, offset=offset)


router = Router(
    path="/api/audit",
    tags=["audit"],
    guards=ADMIN_GUARDS,
    security=ADMIN_SECURITY,
    route_handlers=[list_audit],
)
