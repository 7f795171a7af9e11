"""Change detection: each derived event comes from its trigger, never from a near miss."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from nats.js import JetStreamContext

from publishers import EventPublisher
from publishers._changes import derive_events, emit_change, mentions
from streams import CausationChain, Event, EventValidationError, Settings

from .conftest import stored_events

State = dict[str, Any]

# (entity, trigger previous, trigger current, near-miss previous, near-miss current, event type, how many)
CASES = [
    pytest.param(
        "issue", {"status": "open"}, {"status": "in_progress"}, {"status": "open"}, {"status": "open", "title": "x"},
        "issue.status_changed", 1, id="issue.status_changed",
    ),
    pytest.param(
        "project", {"status": "active"}, {"status": "on_hold"}, {"status": "active"}, {"name": "renamed"},
        "project.status_changed", 1, id="project.status_changed",
    ),
    pytest.param(
        "milestone", {"status": "planned"}, {"status": "in_progress"}, {"status": "planned"}, {"status": "planned"},
        "milestone.status_changed", 1, id="milestone.status_changed",
    ),
    pytest.param(
        "initiative", {"status": "planning"}, {"status": "on_hold"}, {"status": "planning"}, {"name": "x"},
        "initiative.status_changed", 1, id="initiative.status_changed",
    ),
    pytest.param(
        "issue", {"priority": "low"}, {"priority": "critical"}, {"priority": "low"}, {"priority": "low", "title": "x"},
        "issue.priority_changed", 1, id="issue.priority_changed",
    ),
    pytest.param(
        "issue", {"assignee": None}, {"assignee": "ada"}, {"assignee": "ada"}, {"assignee": "ada", "title": "x"},
        "issue.assigned", 1, id="issue.assigned",
    ),
    pytest.param(
        "issue", {"assignee": "ada"}, {"assignee": "grace"}, {"assignee": "ada"}, {"assignee": None},
        "issue.assigned", 1, id="issue.assigned-reassigned",
    ),
    pytest.param(
        "issue", {"assignee": "ada"}, {"assignee": None}, {"assignee": "ada"}, {"title": "assignee not sent"},
        "issue.unassigned", 1, id="issue.unassigned",
    ),
    pytest.param(
        "issue", {"status": "testing"}, {"status": "closed"}, {"status": "review"}, {"status": "testing"},
        "issue.closed", 1, id="issue.closed",
    ),
    pytest.param(
        "issue", {"status": "closed"}, {"status": "open"}, {"status": "open"}, {"status": "in_progress"},
        "issue.reopened", 1, id="issue.reopened",
    ),
    pytest.param(
        "issue", {"tags": ["a"]}, {"tags": ["a", "b", "c"]}, {"tags": ["a", "b"]}, {"tags": ["b", "a"]},
        "issue.tagged", 2, id="issue.tagged",
    ),
    pytest.param(
        "issue", {"blocked_by": []}, {"blocked_by": ["i-9"]}, {"blocked_by": ["i-9"]}, {"blocked_by": ["i-9"]},
        "issue.blocked", 1, id="issue.blocked",
    ),
    pytest.param(
        "issue", {"blocked_by": ["i-8", "i-9"]}, {"blocked_by": []}, {"blocked_by": ["i-8", "i-9"]},
        {"blocked_by": ["i-9"]}, "issue.unblocked", 1, id="issue.unblocked",
    ),
    pytest.param(
        "issue", {"milestone_id": None}, {"milestone_id": "m-1"}, {"milestone_id": "m-1"}, {"milestone_id": None},
        "issue.linked_to_milestone", 1, id="issue.linked_to_milestone",
    ),
    pytest.param(
        "issue", {"initiative_id": None}, {"initiative_id": "in-1"}, {"initiative_id": "in-1"},
        {"initiative_id": "in-1", "title": "x"}, "issue.linked_to_initiative", 1, id="issue.linked_to_initiative",
    ),
    pytest.param(
        "issue", {"initiative_id": "in-1"}, {"initiative_id": "in-2"}, {"initiative_id": "in-1"},
        {"initiative_id": None}, "initiative.issue_added", 1, id="initiative.issue_added",
    ),
    pytest.param(
        "project", {"status": "active"}, {"status": "archived"}, {"status": "active"}, {"status": "completed"},
        "project.archived", 1, id="project.archived",
    ),
    pytest.param(
        "project", {"is_archived": False}, {"is_archived": True}, {"is_archived": True}, {"is_archived": True},
        "project.archived", 1, id="project.archived-flag",
    ),
    pytest.param(
        "project", {"completion_percentage": 20.0}, {"completion_percentage": 25.0},
        {"completion_percentage": 25.0}, {"completion_percentage": 49.9}, "project.completion_milestone", 1,
        id="project.completion_milestone-25",
    ),
    pytest.param(
        "project", {"completion_percentage": 45}, {"completion_percentage": 55}, {"completion_percentage": 51},
        {"completion_percentage": 74}, "project.completion_milestone", 1, id="project.completion_milestone-50",
    ),
    pytest.param(
        "project", {"completion_percentage": 70}, {"completion_percentage": 80}, {"completion_percentage": 80},
        {"completion_percentage": 60}, "project.completion_milestone", 1, id="project.completion_milestone-75",
    ),
    pytest.param(
        "project", {"completion_percentage": 99.5}, {"completion_percentage": 100}, {"completion_percentage": 100},
        {"completion_percentage": 100}, "project.completion_milestone", 1, id="project.completion_milestone-100",
    ),
    pytest.param(
        "project", {"completion_percentage": 10}, {"completion_percentage": 80}, {"completion_percentage": 76},
        {"completion_percentage": 99}, "project.completion_milestone", 3, id="project.completion_milestone-jump",
    ),
    pytest.param(
        "milestone", {"completion_percentage": 8}, {"completion_percentage": 10}, {"completion_percentage": 10},
        {"completion_percentage": 19.9}, "milestone.progress_updated", 1, id="milestone.progress_updated-10",
    ),
    pytest.param(
        "milestone", {"completion_percentage": 55}, {"completion_percentage": 61}, {"completion_percentage": 61},
        {"completion_percentage": 69}, "milestone.progress_updated", 1, id="milestone.progress_updated-60",
    ),
    pytest.param(
        "milestone", {"completion_percentage": 95}, {"completion_percentage": 100}, {"completion_percentage": 90},
        {"completion_percentage": 99}, "milestone.progress_updated", 1, id="milestone.progress_updated-100",
    ),
    pytest.param(
        "initiative", {"status": "in_progress"}, {"status": "completed"}, {"status": "in_progress"},
        {"status": "on_hold"}, "initiative.completed", 1, id="initiative.completed",
    ),
    pytest.param(
        "document", {"issue_id": None}, {"issue_id": "i-1"}, {"issue_id": "i-1"}, {"issue_id": "i-1", "content": "v2"},
        "document.linked", 1, id="document.linked",
    ),
    pytest.param(
        "document", {"project_id": "p-1", "milestone_id": None}, {"project_id": "p-2", "milestone_id": "m-1"},
        {"project_id": "p-1"}, {"project_id": None}, "document.linked", 2, id="document.linked-two",
    ),
    pytest.param(
        "document", {"tags": []}, {"tags": [{"id": "t-1", "name": "rfc"}]}, {"tags": [{"id": "t-1"}]},
        {"tags": [{"id": "t-1", "name": "renamed"}]}, "tag.applied", 1, id="tag.applied",
    ),
    pytest.param(
        "issue", {"tags": ["t-1", "t-2"]}, {"tags": ["t-2"]}, {"tags": ["t-1"]}, {"tags": ["t-1", "t-2"]},
        "tag.removed", 1, id="tag.removed",
    ),
    pytest.param(
        "comment", {"content": "hi @ada"}, {"content": "hi @ada and @grace and @linus."},
        {"content": "hi @ada"}, {"content": "hi @ADA, mail ada@example.com"}, "comment.mention", 2,
        id="comment.mention",
    ),
    pytest.param(
        "literature", {"is_read": False}, {"is_read": True}, {"is_read": True}, {"is_read": True, "title": "x"},
        "literature.marked_read", 1, id="literature.marked_read",
    ),
    pytest.param(
        "literature", {"read": False}, {"read": True}, {"read": True}, {"read": False},
        "literature.marked_read", 1, id="literature.marked_read-read",
    ),
    pytest.param(
        "literature", {"is_favorite": False}, {"is_favorite": True}, {"is_favorite": True}, {"is_favorite": False},
        "literature.favorited", 1, id="literature.favorited",
    ),
]  # fmt: skip

DERIVED = {
    "issue.status_changed", "project.status_changed", "milestone.status_changed", "initiative.status_changed",
    "issue.priority_changed", "issue.assigned", "issue.unassigned", "issue.closed", "issue.reopened",
    "issue.tagged", "issue.blocked", "issue.unblocked", "issue.linked_to_milestone", "issue.linked_to_initiative",
    "initiative.issue_added", "project.archived", "project.completion_milestone", "milestone.progress_updated",
    "initiative.completed", "document.linked", "tag.applied", "tag.removed", "comment.mention",
    "literature.marked_read", "literature.favorited",
}  # fmt: skip


def _types(events: list[Event]) -> list[str]:
    return [e.event_type for e in events]


def test_the_table_covers_every_derived_event_type() -> None:
    assert {case.values[5] for case in CASES} == DERIVED


@pytest.mark.parametrize(("entity", "before", "after", "near_before", "near_after", "event_type", "count"), CASES)
def test_trigger_produces_the_event(
    entity: str,
    before: State,
    after: State,
    near_before: State,
    near_after: State,
    event_type: str,
    count: int,
) -> None:
    events = derive_events(entity, "e-1", previous=before, current=after)
    assert _types(events).count(event_type) == count, _types(events)
    derived = [e for e in events if e.event_type == event_type]
    assert len({e.event_id for e in derived}) == count
    for event in derived:
        assert event.data.changes and set(event.data.changes) <= set(after)


@pytest.mark.parametrize(("entity", "before", "after", "near_before", "near_after", "event_type", "count"), CASES)
def test_near_miss_does_not(
    entity: str,
    before: State,
    after: State,
    near_before: State,
    near_after: State,
    event_type: str,
    count: int,
) -> None:
    events = derive_events(entity, "e-1", previous=near_before, current=near_after)
    assert event_type not in _types(events), _types(events)


def test_changes_lists_exactly_the_changed_fields() -> None:
    previous = {"title": "Bug", "status": "open", "priority": "low", "gone": 1}
    current = {"title": "Bug", "status": "review", "priority": "high", "new": [1]}
    update, *_ = derive_events("issue", "42", previous=previous, current=current)
    assert update.event_type == "issue.updated"
    assert update.data.changes == ["status", "priority", "new"], "a field absent from current is unchanged"
    assert update.data.previous == previous and update.data.current == current


def test_derived_events_share_entity_actor_context_and_cite_the_change() -> None:
    events = derive_events(
        "issue",
        "42",
        previous={"status": "testing", "assignee": None, "priority": "low"},
        current={"status": "closed", "assignee": "ada", "priority": "high"},
        actor={"type": "user", "name": "ada@example.com"},
        context={"project_id": "p-1"},
    )
    update, *derived = events
    assert _types(derived) == ["issue.status_changed", "issue.closed", "issue.priority_changed", "issue.assigned"]
    for event in derived:
        assert event.causation_id == update.event_id
        assert (event.entity_type, event.entity_id, event.actor, event.context) == (
            "issue",
            "42",
            update.actor,
            update.context,
        )
        assert event.timestamp == update.timestamp
        assert event.data.previous == update.data.previous and event.data.current == update.data.current
    assert [e.data.changes for e in derived] == [["status"], ["status"], ["priority"], ["assignee"]]


def test_a_change_caused_by_a_delivery_carries_its_chain_in_every_event() -> None:
    """A receiver's change (loop prevention): the derived events stand where the change does in the chain."""
    cause, sub_id = uuid.uuid4(), uuid.uuid4()
    update, *derived = derive_events(
        "issue",
        "42",
        previous={"status": "testing"},
        current={"status": "closed"},
        causation=f"{cause};depth=2;subscription={sub_id}",
    )
    assert update.causation_id == cause and derived
    for event in (update, *derived):
        assert event.chain == CausationChain(depth=2, subscription_id=sub_id)
    assert all(event.causation_id == update.event_id for event in derived)


def test_events_about_another_entity_name_the_changed_one() -> None:
    events = derive_events(
        "issue", "42", previous={"tags": [], "initiative_id": None}, current={"tags": ["t-1"], "initiative_id": "in-7"}
    )
    by_type = {e.event_type: e for e in events}
    applied = by_type["tag.applied"]
    assert applied.entity_id == "t-1" and applied.context.issue_id == "42" and applied.context.tag_id == "t-1"
    assert applied.data.current == {"tag": "t-1", "entity_type": "issue", "entity_id": "42"}
    added = by_type["initiative.issue_added"]
    assert added.entity_id == "in-7" and added.context.issue_id == "42" and added.context.initiative_id == "in-7"
    assert by_type["issue.linked_to_initiative"].context.initiative_id == "in-7"
    assert by_type["issue.tagged"].data.current["tag"] == "t-1"


def test_the_same_change_id_gives_the_same_derived_ids() -> None:
    change_id = uuid.uuid4()
    first, second = (
        derive_events("issue", "42", previous={"status": "open"}, current={"status": "closed"}, event_id=change_id)
        for _ in range(2)
    )
    assert [e.event_id for e in first] == [e.event_id for e in second]
    assert first[0].event_id == change_id


def test_nothing_changed_derives_nothing() -> None:
    state = {"status": "open", "tags": ["a"], "assignee": "ada"}
    assert derive_events("issue", "42", previous=state, current=dict(state)) == []
    assert derive_events("literature", "l-1", previous={"is_read": True}, current={"is_read": True}) == []


def test_a_creation_implies_links_and_mentions_but_no_transition() -> None:
    issue = derive_events(
        "issue",
        "42",
        previous=None,
        current={"status": "closed", "assignee": "ada", "tags": ["t-1"], "milestone_id": "m-1", "priority": "high"},
    )
    assert _types(issue) == [
        "issue.created",
        "issue.assigned",
        "issue.tagged",
        "tag.applied",
        "issue.linked_to_milestone",
    ]
    comment = derive_events("comment", "c-1", previous=None, current={"content": "@ada and @grace, see @ada"})
    assert _types(comment) == ["comment.created", "comment.mention", "comment.mention"]
    assert [e.data.current["mentioned"] for e in comment[1:]] == ["ada", "grace"]
    assert _types(derive_events("calendar", "ev-1", previous=None, current={"start_time": "2026-01-01T10:00:00Z"})) == [
        "calendar.event_created"
    ]


def test_mentions_skip_email_addresses() -> None:
    assert mentions("@ada: mail bob@example.com, ask @grace.hopper. @ADA again") == ["ada", "grace.hopper"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"entity_type": "system", "previous": {}, "current": {"a": 1}}, "entity_type"),
        ({"entity_type": "issue", "previous": {}, "current": ["not", "a", "dict"]}, "current"),
        ({"entity_type": "issue", "previous": "text", "current": {}}, "previous"),
        ({"entity_type": "issue", "previous": {}, "current": {"a": 1}, "actor": {"type": "robot"}}, "actor.type"),
    ],
)
def test_bad_input_is_refused_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    entity_type = kwargs.pop("entity_type")
    with pytest.raises(EventValidationError) as refused:
        derive_events(entity_type, "e-1", **kwargs)
    assert refused.value.field == field


async def test_emit_change_publishes_the_batch_together(
    publisher: EventPublisher, js: JetStreamContext, settings: Settings, start_seq: int, entity_id: str
) -> None:
    batches: list[list[Event]] = []
    real_emit_many = publisher.emit_many

    async def spy(events: Any) -> Any:
        batch = list(events)
        batches.append(batch)
        return await real_emit_many(batch)

    publisher.emit_many = spy  # type: ignore[method-assign]
    acks = await emit_change(
        publisher,
        "issue",
        entity_id,
        previous={"status": "open", "assignee": None},
        current={"status": "closed", "assignee": "ada"},
        context={"project_id": "p-1"},
    )
    assert len(batches) == 1 and [a.event_id for a in acks] == [e.event_id for e in batches[0]]
    assert [a.seq for a in acks] == list(range(acks[0].seq, acks[0].seq + len(acks))), "stored one after the other"
    stored = await stored_events(js, settings, start_seq, entity_ids={entity_id})
    assert stored == batches[0]
    assert _types(stored) == ["issue.updated", "issue.status_changed", "issue.closed", "issue.assigned"]

    assert await emit_change(publisher, "issue", entity_id, previous={"a": 1}, current={"a": 1}) == []
    assert len(batches) == 1, "nothing changed: nothing published"

    again = await emit_change(
        publisher,
        "issue",
        entity_id,
        previous={"status": "open", "assignee": None},
        current={"status": "closed", "assignee": "ada"},
        context={"project_id": "p-1"},
        event_id=acks[0].event_id,
    )
    assert all(a.duplicate for a in again), "the same change again (a retry) is stored once, derived events included"
    assert [a.seq for a in again] == [a.seq for a in acks]
