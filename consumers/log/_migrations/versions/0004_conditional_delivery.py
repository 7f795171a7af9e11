"""Conditional delivery and self-healing subscriptions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Subscriptions gain a payload template (and its content type), a rate limit
(``{"count": n, "per": "second" | "minute"}``), an ordering mode (``none``,
``strict``, ``entity``) with its key path, a list of fields to redact, and
self-healing: ``auto_recover`` and the probe state of a disabled subscription
(how many probes so far, when the next one is due).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUBSCRIPTIONS = "webhook_subscriptions"
_ORDERING_CHECK = "ck_webhook_subscriptions_ordering"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table(_SUBSCRIPTIONS) as batch:
        batch.add_column(sa.Column("template", sa.Text(), nullable=True))
        batch.add_column(sa.Column("template_content_type", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("rate_limit", _json(), nullable=True))
        batch.add_column(sa.Column("ordering", sa.String(length=8), server_default=sa.text("'none'"), nullable=False))
        batch.add_column(sa.Column("ordering_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("redact_fields", _json(), nullable=True))
        batch.add_column(sa.Column("auto_recover", sa.Boolean(), server_default=sa.text("true"), nullable=False))
        batch.add_column(sa.Column("probe_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch.add_column(sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(op.f(_ORDERING_CHECK), "ordering IN ('none', 'strict', 'entity')")


def downgrade() -> None:
    with op.batch_alter_table(_SUBSCRIPTIONS) as batch:
        batch.drop_constraint(op.f(_ORDERING_CHECK), type_="check")
        for name in (
            "next_probe_at",
            "probe_attempts",
            "auto_recover",
            "redact_fields",
            "ordering_key",
            "ordering",
            "rate_limit",
            "template_content_type",
            "template",
        ):
            batch.drop_column(name)
