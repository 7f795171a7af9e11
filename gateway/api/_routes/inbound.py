"""``POST /api/inbound/github``: GitHub's webhooks, verified, published as ``turbo.external.github.<event>``.

The design's bi-directional webhooks. Public (its router carries no guard): GitHub signs each
delivery with the hook's secret (``GITHUB_WEBHOOK_SECRET``, read once when the app is
built: :data:`GITHUB_SECRET_STATE` of ``app.state``) in ``X-Hub-Signature-256``; a bad
or missing signature gets 401 and nothing is published. An event GitHub sends that is
not in the catalog is answered 200 ``ignored`` and publishes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from litestar import Request, Response, Router, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from consumers import Engine
from integrations import receive_github_webhook

from .._params import EngineDep
from .._problems import ProblemException, problem, responses

__all__ = ("GITHUB_SECRET_STATE", "GITHUB_SECRET_VARIABLE", "InboundAnswer", "router")

GITHUB_SECRET_VARIABLE: Final = "GITHUB_WEBHOOK_SECRET"  # noqa: S105  the variable's name, not a secret
GITHUB_SECRET_STATE: Final = "github_webhook_secret"  # noqa: S105  a key of app.state, not a secret
"""The key of ``app.state`` holding the inbound secret (``""``: unset, every delivery is refused)."""


class InboundAnswer(msgspec.Struct, kw_only=True):
    """What GitHub is told about its delivery."""

    detail: str
    event_id: str | None = None
    subject: str | None = None


@post(
    "/github",
    status_code=202,
    summary="Receive a GitHub webhook (signed with X-Hub-Signature-256; no admin token)",
    description="202: published as `turbo.external.github.<event>`. 200: GitHub's `ping` (`pong`), or an event "
    "the catalog does not list (`ignored: ... is not in the catalog`), published as nothing.",
    responses={
        200: ResponseSpec(
            data_container=InboundAnswer,
            description="Nothing published: `pong`, or an event that is not in the catalog (ignored)",
            generate_examples=False,
        ),
        **responses(400, 401, 503),
    },
    security=[],
)
async def inbound_github(engine: EngineDep, request: Request[Any, Any, State]) -> Response[InboundAnswer]:
    async def mirrors() -> Mapping[str, uuid.UUID]:
        return await _github_mirrors(engine)

    result = await receive_github_webhook(
        dict(request.headers),
        await request.body(),
        secret=request.app.state.get(GITHUB_SECRET_STATE, ""),
        publish=engine.publisher.publish,
        mirrors=mirrors,
    )
    if result.status >= 400:
        raise ProblemException(
            problem(result.status, result.detail, field="X-Hub-Signature-256" if result.status == 401 else None)
        )
    return Response(
        InboundAnswer(detail=result.detail, event_id=result.event_id, subject=result.subject),
        status_code=result.status,
    )


async def _github_mirrors(engine: Engine) -> dict[str, uuid.UUID]:
    """The GitHub subscriptions by repository (lower case); the oldest one when several mirror the same."""
    found: dict[str, uuid.UUID] = {}
    for sub in await engine.subscriptions.list(integration="github", limit=1000):
        repository = sub.integration_config.get("repository")
        if isinstance(repository, str):
            found.setdefault(repository.lower(), sub.id)
    return found


router = Router(path="/api/inbound", tags=["inbound"], route_handlers=[inbound_github])
"""Public: GitHub's signature is the check, not the admin token."""
