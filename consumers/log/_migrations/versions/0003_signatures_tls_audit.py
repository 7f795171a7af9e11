"""Asymmetric signatures, receivers' TLS, and the audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Subscriptions gain their signature scheme (``v1`` HMAC, ``v1a`` ed25519, or
``both``), an ed25519 signing key (and the one before the last rotation,
signing beside it during the grace period), and what a receiver's TLS needs:
a client certificate and key (mutual TLS) and a CA bundle to trust. The
private keys are stored like ``secret_token`` (the stores encrypt them
alike). ``turbohooks_audit_log`` records every admin action: who, when,
what, on what, from where (never a secret).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUBSCRIPTIONS = "webhook_subscriptions"
_AUDIT = "turbohooks_audit_log"
_SCHEME_CHECK = "ck_webhook_subscriptions_signature_scheme"
_NEW_COLUMNS = (
    "signing_key",
    "previous_signing_key",
    "tls_client_cert",
    "tls_client_key",
    "tls_ca_bundle",
)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table(_SUBSCRIPTIONS) as batch:
        batch.add_column(
            sa.Column("signature_scheme", sa.String(length=8), server_default=sa.text("'v1'"), nullable=False)
        )
        for name in _NEW_COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))
        batch.create_check_constraint(op.f(_SCHEME_CHECK), "signature_scheme IN ('v1', 'v1a', 'both')")

    op.create_table(
        _AUDIT,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turbohooks_audit_log")),
    )
    op.create_index("ix_turbohooks_audit_log_at", _AUDIT, ["at"])
    op.create_index("ix_turbohooks_audit_log_action_at", _AUDIT, ["action", "at"])
    op.create_index("ix_turbohooks_audit_log_target_at", _AUDIT, ["target", "at"])


def downgrade() -> None:
    op.drop_table(_AUDIT)
    with op.batch_alter_table(_SUBSCRIPTIONS) as batch:
        batch.drop_constraint(op.f(_SCHEME_CHECK), type_="check")
        for name in reversed(_NEW_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("signature_scheme")
