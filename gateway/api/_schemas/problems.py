"""RFC 9457 problem documents: what every error answer carries."""

from __future__ import annotations

import msgspec

__all__ = ("FieldProblem", "Problem")


class FieldProblem(msgspec.Struct, kw_only=True):
    """What is wrong with one field of the request."""

    field: str
    """Dotted path of the field: ``url``, ``event_types[0]``, ``data.current``, ``since``."""
    message: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem details document (``application/problem+json``)."""

    type: str
    """A URI naming the kind of problem (``urn:turbohooks:problem:validation``…), or ``about:blank``."""
    title: str
    """Short summary of the kind of problem."""
    status: int
    """The HTTP status code."""
    detail: str
    """What went wrong this time, and what to do about it."""
    field: str | None = None
    """The first offending field, when the problem is about one."""
    errors: list[FieldProblem] = msgspec.field(default_factory=list)
    """Every offending field (or, for ``/ready``, every failed part)."""
