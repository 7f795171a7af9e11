"""The shared rendering helpers: limits counted as the services count, escaping, colours, flattening."""

from __future__ import annotations

from integrations import SlackIntegration, describe, flatten, truncate
from integrations._slack import mrkdwn_escape
from integrations.core._render import priority_colour, utf16_len
from streams import build_event

from .events import realistic


def test_truncate_counts_utf16_units_and_marks_the_cut() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("abcdef", 4) == "abc…"
    cut = truncate("🚀" * 10, 7)
    assert utf16_len(cut) <= 7 and cut == "🚀🚀🚀…"
    assert truncate("x", 0) == ""


def test_slack_escapes_markup_without_splitting_an_entity() -> None:
    assert mrkdwn_escape("<!channel> & <b>") == "&lt;!channel&gt; &amp; &lt;b&gt;"
    event = build_event(event_type="issue.created", entity_id="1", data={"current": {"description": "&" * 3000}})
    section = SlackIntegration().message(event, {})["blocks"][1]["text"]["text"]
    assert utf16_len(section) <= 3000 and section.endswith("&amp;…"), "cut between entities, never inside one"


def test_colour_follows_priority_and_alerts_are_red() -> None:
    def colour(event_type: str, priority: str | None) -> int:
        current = {"title": "t"} | ({"priority": priority} if priority else {})
        return priority_colour(describe(build_event(event_type=event_type, entity_id="1", data={"current": current})))

    assert colour("issue.created", "critical") == 0xD92D20
    assert colour("issue.created", "High") == 0xF79009
    assert colour("issue.created", "low") == 0x12B76A
    assert colour("issue.created", None) == 0x667085
    assert colour("issue.overdue", "low") == 0xD92D20


def test_describe_reads_turbos_fields() -> None:
    facts = describe(
        realistic("issue.status_changed"), link_template="https://t/{entity_type}s/{entity_id}?p={project_id}"
    )
    assert facts.headline == "Issue status changed"
    assert facts.assignee == "Bob Builder" and facts.project == "Turbo Web" and facts.priority == "high"
    assert facts.link == "https://t/issues/issue-1?p=project-1"
    first = facts.changes[0]
    assert (first.field, first.before, first.after) == ("status", "open", "in_progress")
    comment = describe(realistic("comment.created"))
    assert comment.title.startswith("Steps to reproduce") and len(comment.title) <= 120


def test_flatten_makes_one_level() -> None:
    assert flatten({"a": {"b": [1, 2], "c": [{"d": None}], "e": {}}, "f": True}) == {
        "a.b": "1, 2",
        "a.c.0.d": None,
        "a.e": None,
        "f": True,
    }
