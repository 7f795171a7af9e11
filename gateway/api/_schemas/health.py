"""The answers of ``/health`` and ``/ready``."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ("HealthStatus", "ReadyCheck", "ReadyStatus")


class HealthStatus(msgspec.Struct, kw_only=True):
    """The process is alive."""

    status: Literal["ok"] = "ok"


class ReadyCheck(msgspec.Struct, kw_only=True):
    """One dependency checked by ``/ready``."""

    name: Literal["nats", "streams", "database"]
    ok: bool
    detail: str | None = None


class ReadyStatus(msgspec.Struct, kw_only=True):
    """Every dependency answered."""

    status: Literal["ready"] = "ready"
    checks: list[ReadyCheck] = msgspec.field(default_factory=list)
