"""Subscription patterns → JetStream filter subjects."""

from __future__ import annotations

import pytest

from streams import EVENT_CATALOG, EventValidationError, filter_subjects, match_event_types, normalize_patterns


@pytest.mark.parametrize(
    ("patterns", "subjects"),
    [
        (["issue.created"], ["turbo.issue.created"]),
        (["issue.*"], ["turbo.issue.*"]),
        (["*.created"], ["turbo.*.created"]),
        (["*"], ["turbo.>"]),
        (["issue.*", "issue.created"], ["turbo.issue.*"]),
        (["issue.created", "*", "comment.created"], ["turbo.>"]),
        (["*.created", "issue.created"], ["turbo.*.created"]),
        (["issue.created", "issue.created"], ["turbo.issue.created"]),
        (["turbo.issue.closed"], ["turbo.issue.closed"]),
        (["issue.closed", "comment.created"], ["turbo.issue.closed", "turbo.comment.created"]),
    ],
)
def test_patterns_become_folded_filter_subjects(patterns: list[str], subjects: list[str]) -> None:
    assert filter_subjects(patterns) == subjects


def test_partial_overlaps_are_expanded_without_overlap() -> None:
    subjects = filter_subjects(["issue.*", "*.created"])
    assert "turbo.issue.*" in subjects
    assert "turbo.project.created" in subjects
    assert "turbo.issue.created" not in subjects, "covered by turbo.issue.*: JetStream refuses overlaps"
    wanted = {f"turbo.{t}" for t in match_event_types(["issue.*", "*.created"])}
    covered = {f"turbo.{t}" for t in EVENT_CATALOG if any(_match(s, f"turbo.{t}") for s in subjects)}
    assert covered == wanted


def _match(subject_filter: str, subject: str) -> bool:
    f, s = subject_filter.split("."), subject.split(".")
    return len(f) == len(s) and all(a in ("*", b) for a, b in zip(f, s, strict=True))


@pytest.mark.parametrize(
    ("patterns", "fragment"),
    [
        (["issue.exploded"], "matches no event type"),
        (["planet.*"], "matches no event type"),
        (["*.exploded"], "matches no event type"),
        (["issue"], "not an event type pattern"),
        (["issue.>"], "not an event type pattern"),
        (["iss*.created"], "not an event type pattern"),
        ([""], "empty"),
        ([], "at least one"),
    ],
)
def test_bad_patterns_are_refused(patterns: list[str], fragment: str) -> None:
    with pytest.raises(EventValidationError, match=fragment) as info:
        normalize_patterns(patterns)
    assert info.value.field.startswith("event_types")
