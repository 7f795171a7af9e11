"""Reading the delivery log: pages of deliveries, one delivery with its attempts, failures to recover."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime

import msgspec
from sqlalchemy import (
    ColumnElement,
    func,
    select,
)
from sqlalchemy.orm import defer

from streams._errors import NotFoundError

from .._messages import (
    DeliveryStatus,
)
from ._database import Database
from ._models import AttemptRow, DeliveryRow
from ._views import (
    DeliveryDetail,
    DeliverySummary,
    attempt_detail,
    payload_bytes,
    summary_values,
)

__all__ = ("DeliveryQueries",)


class DeliveryQueries:
    """The read side of :class:`~consumers.log.DeliveryStore`."""

    _db: Database

    async def list(
        self,
        *,
        subscription_id: uuid.UUID | None = None,
        status: DeliveryStatus | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[DeliverySummary]:
        """Deliveries, newest first; ``since`` (inclusive) and ``until`` (exclusive) bound ``created_at``."""
        query = (
            select(DeliveryRow)
            .options(defer(DeliveryRow.payload), defer(DeliveryRow.response_body))
            .where(*_delivery_filters(subscription_id, status, event_type, since, until))
            .order_by(DeliveryRow.created_at.desc(), DeliveryRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._db.session() as session:
            return [DeliverySummary(**summary_values(row)) for row in await session.scalars(query)]

    async def count(
        self,
        *,
        subscription_id: uuid.UUID | None = None,
        status: DeliveryStatus | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many deliveries :meth:`list` would page through."""
        query = (
            select(func.count())
            .select_from(DeliveryRow)
            .where(*_delivery_filters(subscription_id, status, event_type, since, until))
        )
        async with self._db.session() as session:
            return (await session.execute(query)).scalar_one()

    async def get(self, delivery_id: uuid.UUID) -> DeliveryDetail:
        """The delivery with its attempts; :class:`NotFoundError` if there is none with that id."""
        async with self._db.session() as session:
            row = await session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFoundError(f"delivery {delivery_id} not found")
            attempts = await session.scalars(
                select(AttemptRow)
                .where(AttemptRow.delivery_id == delivery_id)
                .order_by(AttemptRow.started_at, AttemptRow.finished_at, AttemptRow.attempt)
            )
            return DeliveryDetail(
                **summary_values(row),
                response_body=row.response_body,
                payload=payload_bytes(row.payload),
                # Numbered 1, 2, … across triggers: a worker numbers a manual retry's or a
                # replay's attempts from 1 (JetStream's count is the live consumer's only).
                attempt_log=[
                    msgspec.structs.replace(attempt_detail(attempt), attempt=number)
                    for number, attempt in enumerate(attempts, start=1)
                ],
            )

    async def ids_between(self, low: uuid.UUID, high: uuid.UUID) -> builtins.list[uuid.UUID]:
        """Ids of deliveries in ``[low, high]`` (an id prefix), at most 10."""
        query = select(DeliveryRow.id).where(DeliveryRow.id.between(low, high)).order_by(DeliveryRow.id).limit(10)
        async with self._db.session() as session:
            return list(await session.scalars(query))

    async def failed_since(self, subscription_id: uuid.UUID, since: datetime) -> builtins.list[DeliverySummary]:
        """The subscription's ``failed`` deliveries created at or after ``since``, oldest first (to recover)."""
        query = (
            select(DeliveryRow)
            .options(defer(DeliveryRow.payload), defer(DeliveryRow.response_body))
            .where(*_delivery_filters(subscription_id, "failed", None, since, None))
            .order_by(DeliveryRow.created_at, DeliveryRow.id)
        )
        async with self._db.session() as session:
            return [DeliverySummary(**summary_values(row)) for row in await session.scalars(query)]


def _delivery_filters(
    subscription_id: uuid.UUID | None,
    status: str | None,
    event_type: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if subscription_id is not None:
        filters.append(DeliveryRow.subscription_id == subscription_id)
    if status is not None:
        filters.append(DeliveryRow.status == status)
    if event_type is not None:
        filters.append(DeliveryRow.event_type == event_type)
    if since is not None:
        filters.append(DeliveryRow.created_at >= since)
    if until is not None:
        filters.append(DeliveryRow.created_at < until)
    return filters
