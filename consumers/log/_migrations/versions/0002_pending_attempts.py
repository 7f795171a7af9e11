"""Attempts written ahead: an attempt's outcome may be ``pending`` (sent, no answer recorded yet).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

A worker records each attempt before it sends the request, so that the log
shows every request a receiver got even if the worker dies before the
answer; the record of the answer completes the same row.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "webhook_delivery_attempts"
_NAME = "ck_webhook_delivery_attempts_outcome"


def _outcomes(*values: str) -> str:
    return "outcome IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_constraint(op.f(_NAME), type_="check")
        batch.create_check_constraint(op.f(_NAME), _outcomes("success", "retrying", "failed", "pending"))


def downgrade() -> None:
    # A pending attempt never answered: as far as the old schema knows, it failed.
    op.execute("UPDATE webhook_delivery_attempts SET outcome = 'failed' WHERE outcome = 'pending'")
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_constraint(op.f(_NAME), type_="check")
        batch.create_check_constraint(op.f(_NAME), _outcomes("success", "retrying", "failed"))
