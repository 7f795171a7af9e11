"""Counts of events acknowledged without a request: filtered, throttled, stopped as loops.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

One row per subscription, reason and minute; the recorder adds each batch's
counts to it (an upsert), and ``/api/stats`` sums a window of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = "webhook_skip_counts"


def upgrade() -> None:
    op.create_table(
        _COUNTS,
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("reason IN ('filtered', 'throttled', 'loop')", name=op.f("ck_webhook_skip_counts_reason")),
        sa.PrimaryKeyConstraint("subscription_id", "reason", "minute", name=op.f("pk_webhook_skip_counts")),
    )
    op.create_index("ix_webhook_skip_counts_minute", _COUNTS, ["minute"])


def downgrade() -> None:
    op.drop_table(_COUNTS)
