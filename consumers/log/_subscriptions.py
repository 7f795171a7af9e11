"""The subscriptions in SQL: the source of truth the workers' KV mirror is built from."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

import msgspec
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streams._errors import ConflictError, NotFoundError

from .._messages import (
    Ordering,
    RateLimit,
    SignatureScheme,
    Subscription,
    SubscriptionStatus,
)
from ..secrets import Keyring, is_stale, seal, unseal
from ._database import Database
from ._models import SubscriptionRow
from ._views import (
    now,
)

__all__ = ("SubscriptionStore",)


class SubscriptionStore:
    """Subscriptions in SQL. Validation, ids, secrets and timestamps are the caller's job.

    Secrets (signing secrets, custom header values, integration credentials) are
    written encrypted under ``keyring`` and read back in clear. Without a keyring,
    a key living in this process only is used (tests; the engine passes the settings' one).
    """

    def __init__(self, db: Database, keyring: Keyring | None = None) -> None:
        self._db = db
        self.keyring = keyring or Keyring.ephemeral()

    async def create(self, sub: Subscription) -> Subscription:
        """Store a new subscription; :class:`ConflictError` if its name or id is taken."""
        try:
            async with self._db.transaction() as session:
                await _refuse_taken_name(session, sub.name, sub.id)
                if await session.get(SubscriptionRow, sub.id) is not None:
                    raise ConflictError(f"subscription {sub.id} already exists")
                session.add(
                    SubscriptionRow(
                        id=sub.id,
                        created_at=sub.created_at,
                        updated_at=sub.updated_at,
                        consecutive_failures=sub.consecutive_failures,
                        first_failure_at=sub.first_failure_at,
                        **_mutable_values(sub, self.keyring),
                    )
                )
        except IntegrityError as exc:
            await self._explain_integrity_error(sub, exc)
        return await self.get(sub.id)

    async def _explain_integrity_error(self, sub: Subscription, exc: IntegrityError, *, creating: bool = True) -> None:
        """Raise :class:`ConflictError` when a concurrent write took the name (or id); else ``exc``."""
        # The checks inside the transaction passed: another writer won the race since.
        async with self._db.session() as session:
            await _refuse_taken_name(session, sub.name, sub.id)
            if creating and await session.get(SubscriptionRow, sub.id) is not None:
                raise ConflictError(f"subscription {sub.id} already exists") from exc
        raise exc

    async def get(self, subscription_id: uuid.UUID) -> Subscription:
        """The subscription; :class:`NotFoundError` if there is none with that id."""
        async with self._db.session() as session:
            row = await session.get(SubscriptionRow, subscription_id)
            if row is None:
                raise _subscription_not_found(subscription_id)
            return _subscription(row, self.keyring)

    async def list(
        self,
        *,
        status: SubscriptionStatus | None = None,
        integration: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Subscription]:
        """Subscriptions, oldest first, optionally of one status and/or integration."""
        query = (
            select(SubscriptionRow)
            .where(*_subscription_filters(status, integration))
            .order_by(SubscriptionRow.created_at, SubscriptionRow.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._db.session() as session:
            return [_subscription(row, self.keyring) for row in await session.scalars(query)]

    async def matching(self, name: str, low: uuid.UUID | None, high: uuid.UUID | None) -> builtins.list[Subscription]:
        """Subscriptions named ``name`` or (when given) with an id in ``[low, high]`` (an id prefix), at most 10."""
        where: ColumnElement[bool] = SubscriptionRow.name == name
        if low is not None and high is not None:
            where = or_(where, SubscriptionRow.id.between(low, high))
        query = select(SubscriptionRow).where(where).order_by(SubscriptionRow.created_at).limit(10)
        async with self._db.session() as session:
            return [_subscription(row, self.keyring) for row in await session.scalars(query)]

    async def count(self, *, status: SubscriptionStatus | None = None, integration: str | None = None) -> int:
        """How many subscriptions :meth:`list` would page through."""
        query = select(func.count()).select_from(SubscriptionRow).where(*_subscription_filters(status, integration))
        async with self._db.session() as session:
            return (await session.execute(query)).scalar_one()

    async def update(self, sub: Subscription) -> Subscription:
        """Write every user-editable field of ``sub`` and bump ``updated_at``.

        The failure counters belong to :meth:`DeliveryStore.record` and are not
        taken from ``sub``, except that they restart from zero when the status
        becomes ``active`` again (re-enabling must not re-disable at the next failure).
        """
        try:
            async with self._db.transaction() as session:
                row = await session.get(SubscriptionRow, sub.id, with_for_update=True)
                if row is None:
                    raise _subscription_not_found(sub.id)
                await _refuse_taken_name(session, sub.name, sub.id)
                reactivated = row.status != "active" and sub.status == "active"
                for key, value in _mutable_values(sub, self.keyring).items():
                    setattr(row, key, value)
                row.updated_at = now()
                if reactivated:
                    row.consecutive_failures = 0
                    row.first_failure_at = None
        except IntegrityError as exc:
            await self._explain_integrity_error(sub, exc, creating=False)
        return await self.get(sub.id)

    async def disable(self, subscription_id: uuid.UUID, reason: str) -> Subscription | None:
        """Set status ``disabled`` with ``reason``; ``None`` if missing or disabled already.

        It lives here rather than on :class:`DeliveryStore` because it changes a
        subscription; the recorder calls it for :meth:`RecordResult.to_disable`.
        """
        async with self._db.transaction() as session:
            row = await session.get(SubscriptionRow, subscription_id, with_for_update=True)
            if row is None or row.status == "disabled":
                return None
            row.status = "disabled"
            row.active = False
            row.disabled_reason = reason
            row.updated_at = now()
            await session.flush()
            return _subscription(row, self.keyring)

    async def delete(self, subscription_id: uuid.UUID) -> None:
        """Delete the subscription and (by cascade) its deliveries; :class:`NotFoundError` if missing."""
        async with self._db.transaction() as session:
            result = await session.execute(delete(SubscriptionRow).where(SubscriptionRow.id == subscription_id))
            if cast(CursorResult[Any], result).rowcount == 0:
                raise _subscription_not_found(subscription_id)

    async def due_probes(
        self, moment: datetime, integrations: Collection[str], limit: int = 100
    ) -> builtins.list[Subscription]:
        """Disabled subscriptions of ``integrations`` with ``auto_recover`` whose probe is due at ``moment``.

        Unscheduled ones (``next_probe_at`` unset: just disabled, or ``auto_recover`` just
        turned on) are due too, so the prober schedules their first probe; soonest first.
        """
        query = (
            select(SubscriptionRow)
            .where(
                SubscriptionRow.status == "disabled",
                SubscriptionRow.auto_recover.is_(True),
                SubscriptionRow.integration.in_(list(integrations)),
                or_(SubscriptionRow.next_probe_at.is_(None), SubscriptionRow.next_probe_at <= moment),
            )
            .order_by(SubscriptionRow.next_probe_at, SubscriptionRow.id)
            .limit(limit)
        )
        async with self._db.session() as session:
            return [_subscription(row, self.keyring) for row in await session.scalars(query)]

    async def all_for_mirror(self) -> builtins.list[Subscription]:
        """Every subscription, whatever its status, oldest first (to rebuild the workers' mirror)."""
        query = select(SubscriptionRow).order_by(SubscriptionRow.created_at, SubscriptionRow.id)
        async with self._db.session() as session:
            return [_subscription(row, self.keyring) for row in await session.scalars(query)]

    async def reseal(self) -> int:
        """Encrypt under the current key every secret that is not yet: clear ones (an earlier release's),
        ones under an older key (a rotation). Idempotent; returns how many subscriptions were rewritten.

        One short transaction per subscription, its row locked: concurrent writers
        (the gateway, the recorder) go on meanwhile.
        """
        async with self._db.session() as session:
            rows = await session.scalars(select(SubscriptionRow).order_by(SubscriptionRow.created_at))
            stale = [row.id for row in rows if is_stale(_stored(row), self.keyring)]
        rewritten = 0
        for subscription_id in stale:
            async with self._db.transaction() as session:
                row = await session.get(SubscriptionRow, subscription_id, with_for_update=True)
                if row is None or not is_stale(_stored(row), self.keyring):
                    continue
                sealed = seal(unseal(_stored(row), self.keyring), self.keyring)
                row.secret_token = sealed.secret
                row.previous_secret = sealed.previous_secret
                row.signing_key = sealed.signing_key
                row.previous_signing_key = sealed.previous_signing_key
                row.tls_client_key = sealed.tls_client_key
                row.headers = dict(sealed.headers)
                row.integration_config = dict(sealed.integration_config)
                rewritten += 1
        return rewritten

    async def stale_count(self) -> int:
        """How many subscriptions hold a secret not under the current key (0 once a rotation is done)."""
        async with self._db.session() as session:
            rows = await session.scalars(select(SubscriptionRow))
            return sum(1 for row in rows if is_stale(_stored(row), self.keyring))


def _subscription_not_found(subscription_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"subscription {subscription_id} not found")


async def _refuse_taken_name(session: AsyncSession, name: str, own_id: uuid.UUID) -> None:
    taken = await session.scalar(
        select(SubscriptionRow.id).where(SubscriptionRow.name == name, SubscriptionRow.id != own_id)
    )
    if taken is not None:
        raise ConflictError(f"a subscription named {name!r} already exists ({taken}); choose another name")


def _mutable_values(clear: Subscription, keyring: Keyring) -> dict[str, Any]:
    """The columns an update writes from ``sub``: not the id, timestamps nor failure counters; secrets sealed."""
    sub = seal(clear, keyring)
    return {
        "name": sub.name,
        "url": sub.url,
        "event_types": list(sub.event_types),
        "integration": sub.integration,
        "integration_config": dict(sub.integration_config),
        "headers": dict(sub.headers),
        "status": sub.status,
        "active": sub.status == "active",
        # An active subscription has no reason to be disabled.
        "disabled_reason": None if sub.status == "active" else sub.disabled_reason,
        "secret_token": sub.secret,
        "previous_secret": sub.previous_secret,
        "previous_secret_expires_at": sub.previous_secret_expires_at,
        "filters": sub.filters,
        "retry_schedule": None if sub.retry_schedule is None else [float(d) for d in sub.retry_schedule],
        "max_in_flight": sub.max_in_flight,
        "signature_scheme": sub.signature_scheme,
        "signing_key": sub.signing_key,
        "previous_signing_key": sub.previous_signing_key,
        "tls_client_cert": sub.tls_client_cert,
        "tls_client_key": sub.tls_client_key,
        "tls_ca_bundle": sub.tls_ca_bundle,
        "template": sub.template,
        "template_content_type": sub.template_content_type,
        "rate_limit": None if sub.rate_limit is None else msgspec.structs.asdict(sub.rate_limit),
        "ordering": sub.ordering,
        "ordering_key": sub.ordering_key,
        "redact_fields": list(sub.redact_fields) or None,
        "auto_recover": sub.auto_recover,
        "probe_attempts": sub.probe_attempts,
        "next_probe_at": sub.next_probe_at,
    }


def _subscription(row: SubscriptionRow, keyring: Keyring) -> Subscription:
    return unseal(_stored(row), keyring)


def _stored(row: SubscriptionRow) -> Subscription:
    """The row as stored: its secrets sealed (or in clear, from a release before encryption)."""
    return Subscription(
        id=row.id,
        name=row.name,
        url=row.url,
        event_types=list(row.event_types),
        integration=row.integration,
        integration_config=dict(row.integration_config),
        headers=dict(row.headers),
        status=cast(SubscriptionStatus, row.status),
        disabled_reason=row.disabled_reason,
        secret=row.secret_token,
        previous_secret=row.previous_secret,
        previous_secret_expires_at=row.previous_secret_expires_at,
        filters=row.filters,
        retry_schedule=row.retry_schedule,
        max_in_flight=row.max_in_flight,
        consecutive_failures=row.consecutive_failures,
        first_failure_at=row.first_failure_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        signature_scheme=cast(SignatureScheme, row.signature_scheme),
        signing_key=row.signing_key,
        previous_signing_key=row.previous_signing_key,
        tls_client_cert=row.tls_client_cert,
        tls_client_key=row.tls_client_key,
        tls_ca_bundle=row.tls_ca_bundle,
        template=row.template,
        template_content_type=row.template_content_type,
        rate_limit=None if row.rate_limit is None else msgspec.convert(row.rate_limit, RateLimit),
        ordering=cast(Ordering, row.ordering),
        ordering_key=row.ordering_key,
        redact_fields=list(row.redact_fields or ()),
        auto_recover=row.auto_recover,
        probe_attempts=row.probe_attempts,
        next_probe_at=row.next_probe_at,
    )


def _subscription_filters(status: str | None, integration: str | None) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if status is not None:
        filters.append(SubscriptionRow.status == status)
    if integration is not None:
        filters.append(SubscriptionRow.integration == integration)
    return filters
