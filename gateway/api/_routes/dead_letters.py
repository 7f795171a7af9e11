"""The dead letters: list, show, redrive one, redrive all of a subscription's.

Read from the dead-letter stream (``TURBOHOOKS_DLQ``); redriving queues one
more attempt for the workers, like a retry (``gateway.operations``, which the
CLI runs too), and takes the letter out of the dead letters.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final

from litestar import Router, get, post
from litestar.params import FromPath, PathParameter, QueryParameter

from ...operations import (
    MAX_DEAD_LETTER_SCAN,
    MAX_REDRIVE,
    DeadLetterKind,
    get_dead_letter,
    list_dead_letters,
    parse_when,
    redrive_dead_letter,
    redrive_subscription_dead_letters,
)
from .._guard import ADMIN_GUARDS, ADMIN_SECURITY
from .._params import EngineDep, Limit, When
from .._problems import responses
from .._schemas import DeadLetterPage, DeadLetterRedriven, DeadLetterView, SubscriptionRedrive

__all__ = ("router",)

_MAX_SEQ: Final = 2**63 - 1
Seq = Annotated[int, PathParameter(ge=1, le=_MAX_SEQ, description="The letter's sequence in the dead-letter stream.")]


@get(
    "/dead-letters",
    summary="The dead letters, newest first",
    description="Events whose attempts ran out, messages the workers refused (with why), and attempts messages "
    f"the recorder could not store. Reads at most {MAX_DEAD_LETTER_SCAN} letters per call; `next_before_seq` "
    "continues.",
    responses=responses(400, 422, 503),
)
async def list_letters(
    engine: EngineDep,
    subscription_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this subscription's.")] = None,
    cause: Annotated[DeadLetterKind | None, QueryParameter(description="Only letters of this cause.")] = None,
    since: When = None,
    before_seq: Annotated[
        int | None, QueryParameter(ge=1, le=_MAX_SEQ, description="Only letters before this sequence (paging).")
    ] = None,
    limit: Limit = 50,
) -> DeadLetterPage:
    start = parse_when(since, "since") if since is not None else None
    page = await list_dead_letters(
        engine, subscription_id=subscription_id, cause=cause, since=start, before_seq=before_seq, limit=limit
    )
    return DeadLetterPage.of(page)


@get("/dead-letters/{seq:int}", summary="One dead letter, with all it keeps", responses=responses(400, 404, 503))
async def get_letter(engine: EngineDep, seq: Seq) -> DeadLetterView:
    return DeadLetterView.of(await get_dead_letter(engine, seq))


@post(
    "/dead-letters/{seq:int}/redrive",
    status_code=202,
    summary="Deliver a dead letter once more (queued for a worker)",
    description="A refused message is decoded again with today's rules: 409 with the reason if it still does not "
    "decode. Parked attempts messages cannot be redriven (409). A letter queued leaves the dead letters; its "
    "attempt shows up in the delivery log.",
    responses=responses(400, 404, 409, 503),
)
async def redrive_letter(engine: EngineDep, seq: Seq) -> DeadLetterRedriven:
    return await redrive_dead_letter(engine, seq)


@post(
    "/subscriptions/{subscription_id:uuid}/dead-letters/redrive",
    status_code=202,
    summary="Deliver every dead letter of a subscription once more",
    description=f"Queues each redrivable letter (at most {MAX_REDRIVE}); counts, with why, those left.",
    responses=responses(400, 404, 409, 503),
)
async def redrive_subscription(engine: EngineDep, subscription_id: FromPath[uuid.UUID]) -> SubscriptionRedrive:
    return await redrive_subscription_dead_letters(engine, subscription_id)


router = Router(
    path="/api",
    tags=["dead-letters"],
    guards=ADMIN_GUARDS,
    security=ADMIN_SECURITY,
    route_handlers=[list_letters, get_letter, redrive_letter, redrive_subscription],
)
"""Under ``/api``: a subscription's redrive is about its dead letters (and tagged so)."""
