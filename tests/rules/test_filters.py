"""The filter language: every operator true and false, the missing-path rules, and refusals naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.rules import MAX_REGEX_LENGTH, compile_filter
from streams import Event, EventValidationError, build_event


def _event(**current: Any) -> Event:
    return build_event(
        event_type="issue.updated",
        entity_id="ISS-1",
        data={
            "current": {"priority": "high", "status": "testing", "points": 5, "labels": ["bug", "ui"], **current},
            "previous": {"status": "open"},
            "changes": ["status"],
        },
        actor={"type": "user", "name": "ada@example.com"},
        context={"project_id": "P-7"},
    )


EVENT = _event(flag=True, title="Login fails on Safari", score=2.5, nums=[1, 2.5, True])

# (filter, expected on EVENT): each operator once true, once false.
CASES: list[tuple[dict[str, Any], bool]] = [
    ({"data.current.priority": "high"}, True),
    ({"data.current.priority": "low"}, False),
    ({"data.current.priority": {"$eq": "high"}}, True),
    ({"data.current.priority": {"$eq": "urgent"}}, False),
    ({"data.current.priority": {"$ne": "low"}}, True),
    ({"data.current.priority": {"$ne": "high"}}, False),
    ({"data.current.points": {"$gt": 4}}, True),
    ({"data.current.points": {"$gt": 5}}, False),
    ({"data.current.points": {"$gte": 5}}, True),
    ({"data.current.points": {"$gte": 5.5}}, False),
    ({"data.current.points": {"$lt": 6}}, True),
    ({"data.current.points": {"$lt": 5}}, False),
    ({"data.current.points": {"$lte": 5}}, True),
    ({"data.current.score": {"$lte": 2}}, False),
    ({"data.current.status": {"$gt": "open"}}, True),  # strings compare with strings
    ({"data.current.priority": {"$in": ["high", "urgent"]}}, True),
    ({"data.current.priority": {"$in": ["low", "medium"]}}, False),
    ({"data.current.priority": {"$nin": ["low", "medium"]}}, True),
    ({"data.current.priority": {"$nin": ["high"]}}, False),
    ({"data.previous.status": {"$exists": True}}, True),
    ({"data.current.assignee": {"$exists": True}}, False),
    ({"data.current.assignee": {"$exists": False}}, True),
    ({"data.current.priority": {"$exists": False}}, False),
    ({"data.changes": {"$contains": "status"}}, True),
    ({"data.changes": {"$contains": "title"}}, False),
    ({"data.current.title": {"$contains": "Safari"}}, True),
    ({"data.current.title": {"$contains": "Chrome"}}, False),
    ({"data.current.nums": {"$contains": 2.5}}, True),
    ({"data.current.nums": {"$contains": 3}}, False),
    ({"data.current.nums": {"$contains": True}}, True),
    ({"data.current.labels": {"$contains": 1}}, False),
    ({"data.current.points": {"$ne": "5"}}, True),  # another kind is not equal
    ({"data.current.title": {"$startsWith": "Login"}}, True),
    ({"data.current.title": {"$startsWith": "Safari"}}, False),
    ({"data.current.title": {"$endsWith": "Safari"}}, True),
    ({"data.current.title": {"$endsWith": "Login"}}, False),
    ({"data.current.title": {"$regex": "^Login .* Saf"}}, True),
    ({"data.current.title": {"$regex": "(?i)^safari"}}, False),
    ({"$and": [{"actor.type": "user"}, {"context.project_id": "P-7"}]}, True),
    ({"$and": [{"actor.type": "user"}, {"context.project_id": "P-8"}]}, False),
    ({"$or": [{"actor.type": "ai"}, {"data.changes": {"$contains": "status"}}]}, True),
    ({"$or": [{"actor.type": "ai"}, {"data.changes": {"$contains": "title"}}]}, False),
    ({"$not": {"actor.type": "ai"}}, True),
    ({"$not": {"actor.type": "user"}}, False),
    ({"data.current.points": {"$not": {"$gt": 10}}}, True),
    ({"data.current.points": {"$not": {"$gt": 1}}}, False),
    # Several keys: all of them (AND); several operators on one path: all of them.
    ({"data.current.priority": "high", "data.current.status": "testing"}, True),
    ({"data.current.priority": "high", "data.current.status": "done"}, False),
    ({"data.current.points": {"$gte": 1, "$lt": 10}}, True),
    ({"data.current.points": {"$gte": 1, "$lt": 3}}, False),
    # The envelope's own fields, lists by index, booleans, objects.
    ({"event_type": "issue.updated", "entity_id": {"$startsWith": "ISS-"}}, True),
    ({"actor.name": {"$endsWith": "@example.com"}}, True),
    ({"data.current.labels.0": "bug"}, True),
    ({"data.current.labels.5": {"$exists": True}}, False),
    ({"data.current.flag": True}, True),
    ({"data.current.labels": ["bug", "ui"]}, True),
]


@pytest.mark.parametrize(("doc", "expected"), CASES, ids=[str(doc) for doc, _ in CASES])
def test_operator(doc: dict[str, Any], expected: bool) -> None:
    assert compile_filter(doc)(EVENT) is expected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"data.current.nope": {"$ne": "x"}}, True),
        ({"data.current.nope": {"$nin": ["x"]}}, True),
        ({"data.current.nope": {"$exists": False}}, True),
        ({"data.current.nope": {"$eq": "x"}}, False),
        ({"data.current.nope": {"$gt": 0}}, False),
        ({"data.current.nope": {"$lt": 0}}, False),
        ({"data.current.nope": {"$in": ["x"]}}, False),
        ({"data.current.nope": {"$contains": "x"}}, False),
        ({"data.current.nope": {"$regex": ".*"}}, False),
        ({"data.current.nope.deeper": {"$exists": False}}, True),
        ({"data.current.nulled": {"$exists": False}}, True),  # null counts as missing
        ({"context.issue_id": {"$exists": False}}, True),
    ],
)
def test_missing_paths(doc: dict[str, Any], expected: bool) -> None:
    assert compile_filter(doc)(_event(nulled=None)) is expected


@pytest.mark.parametrize(
    "doc",
    [
        {"data.current.points": {"$gt": "4"}},  # a number against a string
        {"data.current.priority": {"$gt": 1}},
        {"data.current.flag": 1},  # true is not 1
        {"data.current.points": "5"},
        {"data.current.points": {"$startsWith": "5"}},
        {"data.current.labels": {"$regex": "bug"}},
        {"data.current.flag": {"$in": [1, 0]}},
    ],
)
def test_mismatched_kinds_are_false_not_errors(doc: dict[str, Any]) -> None:
    assert compile_filter(doc)(_event(flag=True)) is False


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"data.current.priority": {"$gtt": 1}}, "filters.data.current.priority.$gtt", "unknown operator"),
        ({"$nor": []}, "filters.$nor", "unknown operator"),
        ({"$and": [{"a.b": 1}]}, "filters.$and[0].a.b", "is not a field"),
        ({"data.current.x": {"$in": "high"}}, "filters.data.current.x.$in", "must be a list"),
        ({"data.current.x": {"$exists": 1}}, "filters.data.current.x.$exists", "true or false"),
        ({"data.current.x": {"$regex": "(a)\\1"}}, "filters.data.current.x.$regex", "not an RE2"),
        ({"data.current.x": {"$regex": "a" * (MAX_REGEX_LENGTH + 1)}}, "filters.data.current.x.$regex", "longer"),
        ({"data.current.x": {"$gt": [1]}}, "filters.data.current.x.$gt", "number or a string"),
        ({"data.current.x": None}, "filters.data.current.x", "null is not a value"),
        ({"data.current.x": {"$eq": 1, "y": 2}}, "filters.data.current.x.y", "mixes operators"),
        ({"$or": []}, "filters.$or", "non-empty list"),
        ({"event_type.x": 1}, "filters.event_type.x", "has no fields"),
        ({"data..x": 1}, "filters.data..x", "empty path segment"),
    ],
)
def test_refusals_name_the_path_and_operator(doc: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(EventValidationError) as refused:
        compile_filter(doc)
    assert refused.value.field == field
    assert message in str(refused.value)


def test_regex_is_linear_time_on_a_pathological_pattern() -> None:
    # (a+)+$ backtracks exponentially in Python's re; RE2 answers at once.
    predicate = compile_filter({"data.current.title": {"$regex": "(a+)+$"}})
    assert predicate(_event(title="a" * 5000 + "!")) is False
