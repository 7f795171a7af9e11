"""Subscription filters: a JSON document of conditions, compiled once into nested closures.

A filter document maps dotted paths into the event envelope to conditions::

    {"data.current.priority": "high"}                       # a bare value means $eq
    {"data.current.priority": {"$in": ["high", "urgent"]}}
    {"$or": [{"actor.type": "user"}, {"data.changes": {"$contains": "status"}}]}

Keys of one document are all required (AND). :func:`compile_filter` checks the
document and returns a predicate over :class:`~streams.Event`; each path is
resolved by a precomputed chain of attribute and key lookups, each operator is
a closure over its operand, so evaluating an event does no parsing, no dict
walking of the filter and no dispatch on operator names.

Semantics (said in the README too):

- A path that is absent, or whose value is ``null``, is *missing*. On a missing
  path only ``{"$exists": false}``, ``$ne`` and ``$nin`` are true (and ``$not``
  of anything false). ``null`` is therefore not an operand: ``$exists`` says it.
- Comparisons (``$gt $gte $lt $lte``) compare numbers with numbers and strings
  with strings; any other pair is false, never an error. ``$eq``/``$in`` are
  strict about kinds too: ``true`` is not ``1``, ``"1"`` is not ``1``.
- ``$contains``: a list holding an element equal to the operand, or a string
  holding the operand as a substring.
- ``$startsWith $endsWith $regex``: strings only (``$regex`` searches, anchors
  are the pattern's own); the regex is RE2 (linear time, no backreferences or
  lookaround) and at most :data:`MAX_REGEX_LENGTH` characters.
- The envelope's UUIDs and timestamps compare as their JSON strings.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import re2

from streams import EventValidationError

if TYPE_CHECKING:
    from streams import Event

__all__ = ("MAX_FILTER_CLAUSES", "MAX_REGEX_LENGTH", "OPERATORS", "Predicate", "check_filter", "compile_filter")

Predicate = Callable[["Event"], bool]
"""A compiled filter: True when the event is to be delivered."""

MAX_REGEX_LENGTH: Final = 512
"""The longest ``$regex`` pattern accepted, in characters."""
MAX_FILTER_CLAUSES: Final = 100
"""The most conditions (paths and operators) in one filter document."""
_MAX_DEPTH: Final = 8
"""How deep ``$and``/``$or``/``$not`` may nest."""
_MAX_LIST: Final = 1000
"""The most values of one ``$in``/``$nin``."""
_MAX_PATH: Final = 16
"""The most segments of one path."""

OPERATORS: Final = (
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$contains",
    "$startsWith",
    "$endsWith",
    "$regex",
    "$not",
)
"""The operators of one path's condition; ``$and``, ``$or`` and ``$not`` combine documents."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Final = _Missing()

# The envelope's structure: which segments are Struct attributes (read with getattr);
# below them every segment is a key of a JSON object (or an index of a list).
_ENVELOPE: Final[Mapping[str, Mapping[str, None] | None]] = {
    "event_id": None,
    "event_type": None,
    "timestamp": None,
    "entity_type": None,
    "entity_id": None,
    "action": None,
    "causation_id": None,
    "schema_version": None,
    "actor": {"type": None, "name": None, "metadata": None},
    "data": {"current": None, "previous": None, "changes": None},
    "context": {
        name: None
        for name in (
            "project_id",
            "milestone_id",
            "initiative_id",
            "issue_id",
            "comment_id",
            "document_id",
            "tag_id",
            "literature_id",
            "terminal_session_id",
            "calendar_event_id",
        )
    },
}
_CONVERTED: Final = frozenset({"event_id", "timestamp", "causation_id"})
"""Attributes that are not JSON values in the Struct (UUIDs, a datetime): compared as their JSON strings."""
_OPEN: Final = frozenset({"actor.metadata", "data.current", "data.previous", "data.changes"})
"""Attributes holding a JSON object (or list): paths may go on into it (a digit segment indexes a list)."""


class _Compiler:
    def __init__(self) -> None:
        self.clauses = 0

    def document(self, doc: Any, where: str, depth: int) -> Predicate:
        if not isinstance(doc, Mapping):
            raise EventValidationError(where, "must be an object of paths and conditions")
        if depth > _MAX_DEPTH:
            raise EventValidationError(where, f"nests deeper than {_MAX_DEPTH} levels")
        parts: list[Predicate] = []
        for key, value in doc.items():
            if not isinstance(key, str) or not key:
                raise EventValidationError(where, "has an empty key")
            field = f"{where}.{key}"
            if key == "$and" or key == "$or":
                if not isinstance(value, list) or not value:
                    raise EventValidationError(field, "must be a non-empty list of filter documents")
                subs = [self.document(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value)]
                parts.append(_all(subs) if key == "$and" else _any(subs))
            elif key == "$not":
                parts.append(_negate(self.document(value, field, depth + 1)))
            elif key.startswith("$"):
                raise EventValidationError(field, "unknown operator")
            else:
                get = _getter(key, field)
                parts.append(self.condition(get, value, field, depth))
        return _all(parts)

    def condition(self, get: Callable[[Event], Any], cond: Any, where: str, depth: int) -> Predicate:
        """The condition on one path: an operator document, or a bare value (``$eq``)."""
        if isinstance(cond, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in cond):
            if depth > _MAX_DEPTH:
                raise EventValidationError(where, f"nests deeper than {_MAX_DEPTH} levels")
            parts: list[Predicate] = []
            for op, operand in cond.items():
                field = f"{where}.{op}"
                if not isinstance(op, str) or not op.startswith("$"):
                    raise EventValidationError(field, "mixes operators and values: write {'$eq': {...}}")
                if op == "$not":
                    parts.append(_negate(self.condition(get, operand, field, depth + 1)))
                    continue
                test = self.operator(op, operand, field)
                parts.append(_on(get, test))
            return _all(parts)
        return _on(get, self.operator("$eq", cond, where))

    def operator(self, op: str, operand: Any, where: str) -> Callable[[Any], bool]:
        """``op`` over ``operand`` as a test of the path's value (``_MISSING`` when missing)."""
        self.clauses += 1
        if self.clauses > MAX_FILTER_CLAUSES:
            raise EventValidationError(where, f"the filter has more than {MAX_FILTER_CLAUSES} conditions")
        if op in ("$eq", "$ne"):
            value = _operand(operand, where)
            if op == "$eq":
                return _equals(value)
            return _not_equals(value)
        if op in ("$gt", "$gte", "$lt", "$lte"):
            return _comparison(op, operand, where)
        if op in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise EventValidationError(where, "must be a list of values")
            if len(operand) > _MAX_LIST:
                raise EventValidationError(where, f"has more than {_MAX_LIST} values")
            tests = [_equals(_operand(item, f"{where}[{i}]")) for i, item in enumerate(operand)]
            hashable = _hashable_set(operand)
            member: Callable[[Any], bool]
            if hashable is not None:
                kinds = hashable

                def member(v: Any) -> bool:
                    return (type(v), v) in kinds if isinstance(v, (str, int, float)) else any(t(v) for t in tests)

            else:

                def member(v: Any) -> bool:
                    return any(t(v) for t in tests)

            if op == "$in":
                return member
            return lambda v: not member(v)
        if op == "$exists":
            if not isinstance(operand, bool):
                raise EventValidationError(where, "must be true or false")
            if operand:
                return lambda v: v is not _MISSING
            return lambda v: v is _MISSING
        if op == "$contains":
            value = _operand(operand, where)
            if isinstance(value, str):
                # A string in a list compares equal only to a string: ``in`` is exact here, and in C.
                return lambda v: value in v if v.__class__ in _CONTAINERS else False
            equal = _equals(value)
            # A number, boolean or object: an element of a list equal to it (strictly: true is not 1).
            return lambda v: isinstance(v, list) and any(equal(item) for item in v)
        if op in ("$startsWith", "$endsWith"):
            if not isinstance(operand, str):
                raise EventValidationError(where, "must be a string")
            if op == "$startsWith":
                return lambda v: isinstance(v, str) and v.startswith(operand)
            return lambda v: isinstance(v, str) and v.endswith(operand)
        if op == "$regex":
            search = _regex(operand, where)
            return lambda v: isinstance(v, str) and search(v) is not None
        raise EventValidationError(where, "unknown operator")


def compile_filter(doc: Mapping[str, Any]) -> Predicate:
    """``doc`` as a predicate over events; :class:`EventValidationError` names the path and operator refused."""
    return _Compiler().document(doc, "filters", 1)


def check_filter(doc: Any) -> dict[str, Any] | None:
    """``doc`` if it compiles (``None`` and ``{}`` mean no filter: ``None``); refused naming the field."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise EventValidationError("filters", "must be an object of paths and conditions")
    if not doc:
        return None
    compile_filter(doc)
    return doc


def _getter(path: str, where: str) -> Callable[[Event], Any]:
    """The value at ``path`` of an event, or ``_MISSING``: attribute steps, then key or index steps."""
    segments = path.split(".")
    if any(not s for s in segments):
        raise EventValidationError(where, "has an empty path segment")
    if len(segments) > _MAX_PATH:
        raise EventValidationError(where, f"has more than {_MAX_PATH} path segments")
    level: Mapping[str, Any] | None = _ENVELOPE
    attributes: list[str] = []
    for segment in segments:
        if level is None:
            break
        if segment not in level:
            known = ", ".join(level)
            raise EventValidationError(where, f"{'.'.join([*attributes, segment])} is not a field (one of: {known})")
        attributes.append(segment)
        level = level[segment]
    keys = segments[len(attributes) :]
    if keys and ".".join(attributes) not in _OPEN:
        raise EventValidationError(where, f"{'.'.join(attributes)} has no fields")
    steps = tuple(keys)

    # attrgetter walks the Struct attributes in C: one call for "data.current".
    attrs = operator.attrgetter(".".join(attributes))
    if not steps:
        if ".".join(attributes) in _CONVERTED:

            def get_converted(event: Event) -> Any:
                return _json(attrs(event))

            return get_converted

        def get(event: Event) -> Any:
            value = attrs(event)
            return _MISSING if value is None else value

        return get

    def get_in(event: Event) -> Any:
        value = attrs(event)
        for step in steps:
            if isinstance(value, dict):
                value = value.get(step, _MISSING)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                return _MISSING
        return _MISSING if value is None else value

    return get_in


def _json(value: Any) -> Any:
    """An envelope attribute as its JSON value (UUIDs and timestamps as strings; ``None`` missing)."""
    if value is None:
        return _MISSING
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _operand(value: Any, where: str) -> Any:
    if value is None:
        raise EventValidationError(where, "null is not a value to compare: use {'$exists': false}")
    return value


def _equals(operand: Any) -> Callable[[Any], bool]:
    """Strict JSON equality: ``true`` is not ``1``, numbers compare across int and float."""
    if isinstance(operand, bool):
        return lambda v: v is operand
    if isinstance(operand, (int, float)):
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == operand
    if isinstance(operand, str):
        return lambda v: isinstance(v, str) and v == operand
    # Objects and lists: deep equality (Python's ``==`` is JSON's here, but for bools vs numbers).
    return lambda v: type(v) is type(operand) and v == operand


def _not_equals(operand: Any) -> Callable[[Any], bool]:
    """``$ne``: true on a missing path and on another kind, as the negation of :func:`_equals`."""
    if isinstance(operand, str):
        return lambda v: v.__class__ is not str or v != operand
    equal = _equals(operand)
    return lambda v: not equal(v)


_CONTAINERS: Final = frozenset({list, str})


def _hashable_set(values: Sequence[Any]) -> frozenset[tuple[type, Any]] | None:
    """``$in`` of strings and numbers: one set lookup by (kind, value) instead of a loop."""
    if not all(isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return None
    members: set[tuple[type, Any]] = set()
    for v in values:
        if isinstance(v, str):
            members.add((str, v))
        else:
            members.add((int, v))
            members.add((float, v))
    return frozenset(members)


def _comparison(op: str, operand: Any, where: str) -> Callable[[Any], bool]:
    if isinstance(operand, bool) or not isinstance(operand, (int, float, str)):
        raise EventValidationError(where, "must be a number or a string")
    # One closure per operator and kind, the kind test inlined: this is the per-event path.
    if isinstance(operand, str):
        if op == "$gt":
            return lambda v: isinstance(v, str) and v > operand
        if op == "$gte":
            return lambda v: isinstance(v, str) and v >= operand
        if op == "$lt":
            return lambda v: isinstance(v, str) and v < operand
        return lambda v: isinstance(v, str) and v <= operand
    number: Any = operand
    if op == "$gt":
        return lambda v: v.__class__ in _NUMBERS and v > number
    if op == "$gte":
        return lambda v: v.__class__ in _NUMBERS and v >= number
    if op == "$lt":
        return lambda v: v.__class__ in _NUMBERS and v < number
    return lambda v: v.__class__ in _NUMBERS and v <= number


_NUMBERS: Final = frozenset({int, float})
"""JSON numbers as decoded (``bool`` is a subclass of ``int``, not a number here)."""


def _regex(pattern: Any, where: str) -> Callable[[str], object]:
    if not isinstance(pattern, str):
        raise EventValidationError(where, "must be a string (a regular expression)")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise EventValidationError(where, f"is longer than {MAX_REGEX_LENGTH} characters")
    options = re2.Options()
    options.max_mem = 1 << 20  # a pattern's compiled program stays small (1 MiB)
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        raise EventValidationError(where, f"is not an RE2 regular expression: {exc}") from None
    search: Callable[[str], object] = compiled.search
    return search


def _on(get: Callable[[Event], Any], test: Callable[[Any], bool]) -> Predicate:
    return lambda event: test(get(event))


def _negate(predicate: Predicate) -> Predicate:
    return lambda event: not predicate(event)


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return lambda event: True
    items = tuple(parts)

    def every(event: Event) -> bool:
        # A plain loop: a generator in all() costs more than the clauses themselves.
        for p in items:  # noqa: SIM110
            if not p(event):
                return False
        return True

    return every


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    items = tuple(parts)

    def some(event: Event) -> bool:
        for p in items:  # noqa: SIM110  as in _all
            if p(event):
                return True
        return False

    return some
