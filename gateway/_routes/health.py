"""``GET /health`` (alive, no token) and ``GET /ready`` (NATS, streams, database)."""

from __future__ import annotations

import asyncio
from typing import Final

from litestar import get
from nats.errors import Error as NatsError
from sqlalchemy.exc import SQLAlchemyError

from streams import ATTEMPTS_STREAM, DEAD_LETTER_STREAM, REDELIVER_STREAM, TurbohooksError

from .._auth import PUBLIC
from .._problems import ProblemException, problem, responses
from .._schemas import FieldProblem, HealthStatus, ReadyCheck, ReadyStatus
from ._params import EngineDep

__all__ = ("health", "ready")

_CHECK_TIMEOUT: Final = 2.0
_FAILURES: Final = (NatsError, TimeoutError, OSError, SQLAlchemyError, TurbohooksError)


@get("/health", tags=["health"], opt={PUBLIC: True}, summary="The process is alive (no token needed)")
async def health() -> HealthStatus:
    return HealthStatus()


async def _streams(engine: EngineDep) -> str | None:
    missing: list[str] = []
    for name in (engine.settings.stream_name, ATTEMPTS_STREAM, DEAD_LETTER_STREAM, REDELIVER_STREAM):
        try:
            await asyncio.wait_for(engine.js.stream_info(name), _CHECK_TIMEOUT)
        except _FAILURES as exc:
            missing.append(f"{name} ({type(exc).__name__}{f': {exc}' if str(exc) else ''})")
    return f"not available: {', '.join(missing)}" if missing else None


@get(
    "/ready",
    tags=["health"],
    summary="NATS connected, streams present, database reachable",
    responses=responses(503),
)
async def ready(engine: EngineDep) -> ReadyStatus:
    checks: list[ReadyCheck] = []
    connected = engine.nc.is_connected
    checks.append(ReadyCheck(name="nats", ok=connected, detail=None if connected else "not connected"))
    streams = await _streams(engine) if connected else "unknown: NATS is not connected"
    checks.append(ReadyCheck(name="streams", ok=streams is None, detail=streams))
    try:
        await engine.db.ping(timeout=_CHECK_TIMEOUT)
        checks.append(ReadyCheck(name="database", ok=True))
    except _FAILURES as exc:
        checks.append(ReadyCheck(name="database", ok=False, detail=str(exc)))
    failed = [FieldProblem(field=c.name, message=c.detail or "failed") for c in checks if not c.ok]
    if failed:
        detail = "not ready: " + "; ".join(f"{f.field} {f.message}" for f in failed)
        raise ProblemException(problem(503, detail, field=failed[0].field, errors=failed))
    return ReadyStatus(checks=checks)
