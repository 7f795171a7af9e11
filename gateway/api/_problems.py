"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers goes through here, translated at the boundary to
the most specific problem: a request that does not fit the schema (400: bad
JSON, a wrong type, an unknown field, a bad query parameter), a value the rules
refuse (422: an unknown event type, a destination not allowed), both naming the
field; a missing thing (404), a conflict (409), a body too large (413), NATS or
the database unreachable (503). Anything else is a bug: it is
logged with its traceback and answered as a bare 500 problem.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap
from nats.errors import Error as NatsError
from nats.js.errors import APIError as JsAPIError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from streams import (
    ConflictError,
    DatabaseUnavailableError,
    EventValidationError,
    NatsUnavailableError,
    NotFoundError,
    PublishError,
)

from ._schemas import FieldProblem, Problem

__all__ = ("EXCEPTION_HANDLERS", "PROBLEM_MEDIA_TYPE", "ProblemException", "problem", "problem_response", "responses")

_log = logging.getLogger("turbohooks.gateway")

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_URN: Final = "urn:turbohooks:problem:"
_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]*)`")

_KINDS: Final[dict[int, str]] = {
    400: "invalid-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "body-too-large",
    422: "validation",
    500: "internal",
    503: "unavailable",
}

_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "The request does not fit the schema (malformed JSON, a wrong type, an unknown field, a bad query "
    "parameter); `field` names it.",
    401: "Missing or wrong `Authorization: Bearer <TURBOHOOKS_ADMIN_TOKEN>`.",
    404: "No such subscription, delivery or event (or a malformed id in the path).",
    409: "The request contradicts the current state (a taken name, a paused subscription).",
    413: "The request body is larger than the limit.",
    422: "A value is refused by the rules (an unknown event type, a destination not allowed…); `field` names it.",
    503: "NATS or the database cannot be reached; retry later.",
}


class ProblemException(Exception):
    """Raised by a route to answer with ``problem`` as it is."""

    def __init__(self, body: Problem, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body.detail)
        self.problem = body
        self.headers = dict(headers or {})


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(
    status: int, detail: str, *, field: str | None = None, errors: Sequence[FieldProblem] = (), kind: str | None = None
) -> Problem:
    """A problem document; ``kind`` defaults from the status."""
    name = kind or _KINDS.get(status)
    return Problem(
        type=_URN + name if name else "about:blank",
        title=_title(status),
        status=status,
        detail=detail,
        field=field,
        errors=list(errors),
    )


def problem_response(body: Problem, *, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    """``body`` as an ``application/problem+json`` response."""
    return Response(
        content=msgspec.json.encode(body),
        status_code=body.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI description of the problems a route can answer (401 is added to every one)."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_MEDIA_TYPE,
            description=_DESCRIPTIONS.get(status, _title(status)),
            generate_examples=False,
        )
        for status in sorted({401, *statuses})
    }


def _on_problem(_: Request[Any, Any, Any], exc: ProblemException) -> Response[bytes]:
    return problem_response(exc.problem, headers=exc.headers)


def _on_event_validation(_: Request[Any, Any, Any], exc: EventValidationError) -> Response[bytes]:
    return problem_response(
        problem(422, str(exc), field=exc.field, errors=[FieldProblem(field=exc.field, message=exc.problem)])
    )


def _field_of(error: Mapping[str, Any]) -> str:
    """The field a Litestar validation message is about, when msgspec's own error is not at hand."""
    key = str(error.get("key") or "")
    named = _NAMED_FIELD.search(str(error.get("message", "")))
    if named:
        return f"{key}.{named.group(1)}" if key and key != "data" else named.group(1)
    return key if key and key != "data" else "body"


def _from_msgspec(message: str) -> FieldProblem:
    """The field and message of a msgspec error, ``"<message> - at `$.<path>`"``.

    The path starts with the handler's parameter: a query parameter's name, or
    ``data`` for the body, whose own fields are named without it.
    """
    text, _, where = message.partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    if path == "data" or path.startswith("data."):
        path = path[5:]
    named = _NAMED_FIELD.search(text)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return FieldProblem(field=path or "body", message=text)


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    cause = exc.__cause__
    if isinstance(cause, msgspec.ValidationError) and " - at `$" in str(cause):
        # Litestar rewrites msgspec's path and loses "data." inside the body; msgspec's is exact.
        errors = [_from_msgspec(str(cause))]
    elif isinstance(cause, KeyError) and cause.args:
        # A required query parameter is missing: Litestar says so in the detail, names it in the KeyError.
        errors = [FieldProblem(field=str(cause.args[0]), message="is required")]
    else:
        raw = exc.extra if isinstance(exc.extra, list) else []
        errors = [
            FieldProblem(field=_field_of(item), message=str(item.get("message", "is invalid")))
            for item in raw
            if isinstance(item, Mapping)
        ]
    if not errors:
        errors = [FieldProblem(field="body", message=exc.detail)]
    first = errors[0]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(problem(400, detail, field=first.field, errors=errors))


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = exc.detail or _title(status)
    field = None
    if status == 400:
        # Litestar's 400s are the body failing to parse ("JSON is malformed: ...").
        field = "body"
        detail = f"the request body is not valid JSON: {detail}"
    elif status == 413:
        handler = request.scope.get("route_handler")
        limit = handler.resolve_request_max_body_size() if isinstance(handler, HTTPRouteHandler) else None
        detail = f"the request body is larger than {limit} bytes" if limit else "the request body is too large"
    errors = [FieldProblem(field=field, message=detail)] if field else []
    if status >= 500:
        _log.error("gateway: %s", detail)
    return problem_response(problem(status, detail, field=field, errors=errors), headers=exc.headers)


def _on_not_found(_: Request[Any, Any, Any], exc: NotFoundError) -> Response[bytes]:
    return problem_response(problem(404, str(exc)))


def _on_conflict(_: Request[Any, Any, Any], exc: ConflictError) -> Response[bytes]:
    return problem_response(problem(409, str(exc)))


def _unavailable(detail: str) -> Response[bytes]:
    return problem_response(problem(503, detail), headers={"Retry-After": "5"})


def _on_nats(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, JsAPIError) and (exc.code or 0) < 500:
        # JetStream refusing a request the gateway built is a bug, not an outage.
        return _on_bug(_, exc)
    _log.warning("gateway: NATS unavailable: %r", exc)
    return _unavailable(f"turbohooks: NATS is unavailable ({type(exc).__name__}: {exc}); retry later")


def _on_turbohooks_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    _log.warning("gateway: %s", exc)
    return _unavailable(str(exc))


def _on_database(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated and type(exc).__name__ not in _DB_OUTAGES:
        return _on_bug(_, exc)
    _log.warning("gateway: database unavailable: %s", exc)
    return _unavailable(f"turbohooks: the database is unavailable ({type(exc).__name__}); retry later")


_DB_OUTAGES: Final = frozenset({"OperationalError", "InterfaceError"})


def _on_timeout(_: Request[Any, Any, Any], exc: TimeoutError) -> Response[bytes]:
    _log.warning("gateway: a dependency timed out: %r", exc)
    return _unavailable("turbohooks: NATS or the database did not answer in time; retry later")


def _on_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[bytes]:
    # msgspec refuses JSON nested deeper than Python's recursion limit this way.
    _log.warning("gateway: refused a request nested too deeply: %s", exc)
    detail = "the request body is nested too deeply"
    return problem_response(problem(400, detail, field="body", errors=[FieldProblem(field="body", message=detail)]))


def _on_bug(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    _log.exception("gateway: unexpected error", exc_info=exc)
    return problem_response(problem(500, "an unexpected error occurred; it is logged"))


EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    ProblemException: _on_problem,
    EventValidationError: _on_event_validation,
    ValidationException: _on_validation,
    HTTPException: _on_http,
    NotFoundError: _on_not_found,
    ConflictError: _on_conflict,
    NatsUnavailableError: _on_turbohooks_unavailable,
    DatabaseUnavailableError: _on_turbohooks_unavailable,
    PublishError: _on_turbohooks_unavailable,
    NatsError: _on_nats,
    DBAPIError: _on_database,
    DisconnectionError: _on_database,
    PoolTimeoutError: _on_database,
    TimeoutError: _on_timeout,
    RecursionError: _on_too_deep,
    Exception: _on_bug,
}
"""Exception type → handler; Litestar picks the nearest class in the exception's MRO."""
