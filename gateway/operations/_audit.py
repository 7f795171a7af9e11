"""Recording admin actions in the audit log, for the API, the CLI and the UI alike.

The subscription changes (create, update, pause, resume, rotate, delete) are
recorded by :class:`~consumers.SubscriptionService` itself; the operations here
(retry, recover, replay, test) call :func:`record_audit`, and so may the UI
(sign-in). Who acts comes from :func:`~consumers.acting_as` (the API sets it
per request from the admin token's hash) unless given; never pass a secret in
``details``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from consumers import acting_as, current_actor

if TYPE_CHECKING:
    from consumers import AuditEntry, Engine

__all__ = ("acting_as", "current_actor", "record_audit", "token_actor")


def token_actor(token: str) -> str:
    """``token:<12 hex>``: who holds ``token``, said without it (a SHA-256 prefix cannot be turned back)."""
    return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:12]


async def record_audit(
    engine: Engine,
    actor: str | None,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    source_ip: str | None = None,
) -> AuditEntry | None:
    """Append one action to the audit log (``actor``/``source_ip`` ``None``: the current request's).

    For the UI's sign-in: ``record_audit(engine, "ui:<session id>", "sign-in", "session", {"ok": True}, ip)``.
    ``None`` when the engine has no audit log.
    """
    if engine.audit is None:
        return None
    return await engine.audit.record(action, target, details, actor=actor, source_ip=source_ip)
