"""The external event types (``external.github.*``): named by patterns, apart from Turbo's 59."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams import (
    EVENT_CATALOG,
    EXTERNAL_EVENT_TYPES,
    KNOWN_EVENT_TYPES,
    PLATFORM_EVENT_TYPES,
    PLATFORM_SOURCE,
    TURBO_SOURCE,
    EventValidationError,
    build_event,
    event_type_info,
    filter_subjects,
    match_event_types,
    normalize_patterns,
)

ROOT = Path(__file__).resolve().parents[2]


def test_turbo_types_stay_the_designs_58_and_the_recovery() -> None:
    assert len(EVENT_CATALOG) == 59
    assert {info.source for info in EVENT_CATALOG.values()} == {TURBO_SOURCE}
    assert not set(EVENT_CATALOG) & set(EXTERNAL_EVENT_TYPES)
    assert list(KNOWN_EVENT_TYPES) == [*EVENT_CATALOG, *EXTERNAL_EVENT_TYPES, *PLATFORM_EVENT_TYPES]


def test_turbohooks_own_types_are_system_events_about_a_subscription() -> None:
    assert set(PLATFORM_EVENT_TYPES) == {
        "system.subscription_probe",
        "system.subscription_probe_failed",
        "system.subscription_recovered",
        "system.causation_loop_stopped",
    }
    for info in PLATFORM_EVENT_TYPES.values():
        assert info.source == PLATFORM_SOURCE and info.entity_type == "webhook_subscription"
        assert info.trigger and info.description
    assert "system.subscription_recovered" in match_event_types(["system.*"])


def test_external_github_types() -> None:
    for event_type, info in EXTERNAL_EVENT_TYPES.items():
        assert event_type == f"external.github.{info.action}"
        assert info.source == "github" and info.trigger and info.description
        assert info.entity_type.startswith("github_")
        assert event_type_info(event_type) is info


def test_the_github_events_the_inbound_reader_handles_are_in_the_catalog() -> None:
    """Every GitHub event name the inbound payload reader (integrations/) names has an entry."""
    sources = [p.read_text(encoding="utf-8") for p in (ROOT / "integrations").rglob("*.py")]
    named = {m for text in sources for m in re.findall(r'name == "([a-z_]+)"', text)}
    handled = {"issues", "issue_comment", "pull_request", "push"} | named - {"ping"}
    assert {f"external.github.{n}" for n in handled} <= set(EXTERNAL_EVENT_TYPES)


@pytest.mark.parametrize(
    ("patterns", "subjects"),
    [
        (["external.github.*"], ["turbo.external.github.*"]),
        (["external.github.issues"], ["turbo.external.github.issues"]),
        (["external.*.push"], ["turbo.external.*.push"]),
        (["issue.*", "external.github.issues"], ["turbo.issue.*", "turbo.external.github.issues"]),
        (["external.github.*", "external.github.push"], ["turbo.external.github.*"]),
        (["*", "external.github.push"], ["turbo.>"]),
    ],
)
def test_patterns_name_external_types(patterns: list[str], subjects: list[str]) -> None:
    assert filter_subjects(patterns) == subjects


def test_partial_overlap_of_external_patterns_is_expanded() -> None:
    subjects = filter_subjects(["external.github.*", "external.*.push", "issue.*", "*.created"])
    assert "turbo.external.github.*" in subjects and "turbo.external.*.push" not in subjects
    assert "turbo.issue.*" in subjects and "turbo.project.created" in subjects


def test_match_and_refusals() -> None:
    assert match_event_types(["external.github.*"]) == list(EXTERNAL_EVENT_TYPES)
    assert not any(t.startswith("external.") for t in match_event_types(["*.*", "*.created"]))
    assert len(match_event_types(["*"])) == len(KNOWN_EVENT_TYPES)
    with pytest.raises(EventValidationError, match="matches no event type"):
        normalize_patterns(["external.github.gollum_party"])
    with pytest.raises(EventValidationError, match="not an event type pattern"):
        normalize_patterns(["external.github.issues.opened"])


def test_build_event_keeps_the_payloads_entity() -> None:
    event = build_event(
        event_type="external.github.issue_comment", entity_type="github_pull_request", entity_id="o/r#1"
    )
    assert (event.entity_type, event.subject) == ("github_pull_request", "turbo.external.github.issue_comment")
    assert build_event(event_type="external.github.push", entity_id="o/r").entity_type == "github_repository"
    with pytest.raises(EventValidationError, match="entity_type"):
        build_event(event_type="issue.created", entity_type="comment", entity_id="x")
