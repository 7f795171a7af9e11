"""SQL tables of the delivery engine: subscriptions, deliveries, delivery attempts.

The schema follows the design's "Database Schema" section, widened with what the
engine needs (integrations, pause/disable, secret rotation, per-attempt history).
It is portable: SQLite (the default) and PostgreSQL, where JSON columns are JSONB.
The schema itself is created by the Alembic migrations in ``consumers/_migrations``;
these models must stay in step with them (a test compares the two).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

__all__ = (
    "ALEMBIC_VERSION_TABLE",
    "NAMING_CONVENTION",
    "AttemptRow",
    "AuditRow",
    "Base",
    "DeliveryRow",
    "JSONDocument",
    "JSONValue",
    "SkipCountRow",
    "SubscriptionRow",
    "UTCDateTime",
)

ALEMBIC_VERSION_TABLE: Final = "turbohooks_alembic_version"
"""Alembic's bookkeeping table, prefixed so it cannot collide with the host app's own Alembic."""

NAMING_CONVENTION: Final = {
    # Named constraints: Alembic's SQLite batch mode can only alter what it can name.
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    PostgreSQL keeps the zone (``timestamptz``); SQLite drops it, so values are
    converted to UTC before they are written (which also keeps SQLite's text
    ordering right) and get ``tzinfo=UTC`` back when read. A naive value is
    taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(*, none_as_null: bool) -> TypeEngine[Any]:
    return JSON(none_as_null=none_as_null).with_variant(JSONB(none_as_null=none_as_null), "postgresql")


JSONValue: Final = _json(none_as_null=True)
"""A JSON column (JSONB on PostgreSQL) where Python ``None`` is SQL ``NULL``."""
JSONDocument: Final = _json(none_as_null=False)
"""A JSON column where Python ``None`` is the JSON ``null`` (for NOT NULL documents)."""


class Base(DeclarativeBase):
    """The declarative base of turbohooks' tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SubscriptionRow(Base):
    """``webhook_subscriptions``: one row per subscription (see :class:`~consumers._messages.Subscription`)."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        Index("ix_webhook_subscriptions_name", "name", unique=True),
        Index("ix_webhook_subscriptions_integration_status", "integration", "status"),
        CheckConstraint("status IN ('active', 'paused', 'disabled')", name="status"),
        CheckConstraint("signature_scheme IN ('v1', 'v1a', 'both')", name="signature_scheme"),
        CheckConstraint("ordering IN ('none', 'strict', 'entity')", name="ordering"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSONValue)
    # Kept for the design's schema and for SQL readers; always equals status == 'active'.
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    secret_token: Mapped[str] = mapped_column(String(255))
    filters: Mapped[dict[str, Any] | None] = mapped_column(JSONValue, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    integration: Mapped[str] = mapped_column(String(32), server_default=text("'webhook'"))
    integration_config: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    headers: Mapped[dict[str, str]] = mapped_column(JSONValue)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'active'"))
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retry_schedule: Mapped[list[float] | None] = mapped_column(JSONValue, nullable=True)
    max_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    first_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Migration 0003: asymmetric signatures and the receiver's TLS. signing_key, previous_signing_key
    # and tls_client_key are secrets, stored like secret_token.
    signature_scheme: Mapped[str] = mapped_column(String(8), server_default=text("'v1'"))
    signing_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_signing_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    tls_client_cert: Mapped[str | None] = mapped_column(Text, nullable=True)
    tls_client_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    tls_ca_bundle: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Migration 0004: conditional delivery (templates, rate limits, ordering, redaction) and self-healing.
    template: Mapped[str | None] = mapped_column(Text, nullable=True)
    template_content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    rate_limit: Mapped[dict[str, Any] | None] = mapped_column(JSONValue, nullable=True)
    ordering: Mapped[str] = mapped_column(String(8), server_default=text("'none'"))
    ordering_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    redact_fields: Mapped[list[str] | None] = mapped_column(JSONValue, nullable=True)
    auto_recover: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    probe_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRow(Base):
    """``turbohooks_audit_log``: one row per admin action (who, when, what, on what, from where; no secret)."""

    __tablename__ = "turbohooks_audit_log"
    __table_args__ = (
        Index("ix_turbohooks_audit_log_at", "at"),
        Index("ix_turbohooks_audit_log_action_at", "action", "at"),
        Index("ix_turbohooks_audit_log_target_at", "target", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    """``token:<12 hex of the token's SHA-256>``, ``ui:<session>``, ``local:<os user>``: never a token."""
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DeliveryRow(Base):
    """``webhook_deliveries``: one row per (subscription, event), summing up its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_subscription_id_created_at", "subscription_id", "created_at"),
        Index("ix_webhook_deliveries_status_created_at", "status", "created_at"),
        Index("ix_webhook_deliveries_event_type", "event_type"),
        # The stats window and the unfiltered delivery log scan by time alone.
        Index("ix_webhook_deliveries_created_at", "created_at"),
        CheckConstraint("status IN ('pending', 'success', 'failed')", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    """``delivery_id_for(subscription_id, event_id)``."""
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    event_type: Mapped[str] = mapped_column(String(100))
    # The request body of the latest attempt that carried one; JSON null when none did.
    payload: Mapped[Any] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(20))
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    stream_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    trigger: Mapped[str] = mapped_column(String(16), server_default=text("'live'"))


class AttemptRow(Base):
    """``webhook_delivery_attempts``: one row per HTTP attempt of a delivery."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (
        Index("ix_webhook_delivery_attempts_delivery_id_finished_at", "delivery_id", "finished_at"),
        # Latency percentiles of the stats page scan attempts by time.
        Index("ix_webhook_delivery_attempts_started_at", "started_at"),
        CheckConstraint("outcome IN ('success', 'retrying', 'failed', 'pending')", name="outcome"),
    )

    attempt_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    request_url: Mapped[str] = mapped_column(Text)
    request_headers: Mapped[dict[str, str]] = mapped_column(JSONValue)
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[dict[str, str]] = mapped_column(JSONValue)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SkipCountRow(Base):
    """``webhook_skip_counts``: events a subscription acknowledged without a request, by reason and minute.

    No foreign key: a count may arrive after its subscription was deleted, and
    must not make the recorder's batch fail; the stats join what still exists.
    """

    __tablename__ = "webhook_skip_counts"
    __table_args__ = (
        Index("ix_webhook_skip_counts_minute", "minute"),
        CheckConstraint("reason IN ('filtered', 'throttled', 'loop')", name="reason"),
    )

    subscription_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
