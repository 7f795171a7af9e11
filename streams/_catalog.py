"""The catalog of every event type: the one source of truth.

Validation, the CLI (``turbohooks events``), the gateway (``GET /api/event-types``)
and the UI all read this table. :data:`EVENT_CATALOG` holds the 59 types Turbo
publishes: the design document's 58 (``shared/mission/webhook-system-design.md``),
section by section, and ``system.health_check_recovered``, the end of an alert that
``system.health_check_failed`` raised. :data:`EXTERNAL_EVENT_TYPES` holds the events turbohooks
receives from outside (``external.<source>.<name>``: the inbound GitHub webhook),
their ``source`` naming where they come from. :data:`PLATFORM_EVENT_TYPES` holds
the ``system.*`` events turbohooks itself publishes about its subscriptions
(``source`` ``turbohooks``: a probe, a recovery, a loop stopped). Patterns and
validation read :data:`KNOWN_EVENT_TYPES`, all three together.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

import msgspec

__all__ = (
    "ENTITY_TYPES",
    "EVENT_CATALOG",
    "EXTERNAL_EVENT_TYPES",
    "EXTERNAL_SOURCES",
    "KNOWN_EVENT_TYPES",
    "PLATFORM_EVENT_TYPES",
    "PLATFORM_SOURCE",
    "TURBO_SOURCE",
    "EventTypeInfo",
    "event_type_info",
)

TURBO_SOURCE: Final = "turbo"
"""The ``source`` of the types Turbo publishes."""

PLATFORM_SOURCE: Final = "turbohooks"
"""The ``source`` of the ``system.*`` types turbohooks publishes about its own subscriptions."""


class EventTypeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One event type of the catalog."""

    event_type: str
    """Dotted name, ``<entity>.<action>`` (external: ``external.<source>.<name>``); the subject is ``turbo.`` + it."""
    entity_type: str
    """The kind of entity the event is about."""
    action: str
    """What happened to it."""
    trigger: str
    """When the event is published."""
    description: str
    """What subscribers typically do with it."""
    source: str = TURBO_SOURCE
    """Who publishes it: ``turbo``, or the outside service it is received from (``github``)."""


def _e(event_type: str, trigger: str, description: str) -> EventTypeInfo:
    entity, _, action = event_type.partition(".")
    return EventTypeInfo(
        event_type=event_type,
        entity_type=entity,
        action=action,
        trigger=trigger,
        description=description,
    )


_ENTRIES: Final = (
    # 1. Projects
    _e("project.created", "A new project is created.", "Initialize tools, repositories and CI; notify the team."),
    _e("project.updated", "Project details are modified.", "Sync changes to external systems; track evolution."),
    _e(
        "project.status_changed",
        "Project status changes (active, on_hold, completed, archived).",
        "Notify the team; trigger closing workflows; update dashboards.",
    ),
    _e(
        "project.completion_milestone",
        "Project completion reaches 25%, 50%, 75% or 100%.",
        "Celebrate; generate progress reports; schedule reviews.",
    ),
    _e("project.archived", "A project is archived.", "Archive external resources; back up project data."),
    _e("project.deleted", "A project is permanently deleted.", "Clean up external resources; audit logging."),
    # 2. Issues
    _e("issue.created", "A new issue is created.", "Auto-assign; create external tickets; trigger AI triage."),
    _e("issue.updated", "Issue fields are modified.", "Sync external trackers; notify the assignee."),
    _e("issue.assigned", "An issue is assigned to someone.", "Notify the assignee; update workload tracking."),
    _e(
        "issue.unassigned",
        "The assignee is removed from an issue.",
        "Return to the queue; notify the previous assignee.",
    ),
    _e(
        "issue.status_changed",
        "Issue status changes (open, in_progress, review, testing, closed).",
        "Move cards on boards; trigger testing; update metrics.",
    ),
    _e("issue.priority_changed", "Issue priority is modified.", "Notify escalations; alert on-call for critical."),
    _e("issue.closed", "Issue status is set to closed.", "Notify creator and assignee; update project metrics."),
    _e("issue.reopened", "A closed issue is reopened.", "Notify the previous assignee; re-prioritize."),
    _e("issue.commented", "A new comment is added to an issue.", "Trigger an AI response; notify participants."),
    _e("issue.tagged", "A tag is added to an issue.", "Auto-categorize; notify tag watchers."),
    _e(
        "issue.due_date_approaching",
        "The issue's due date is within a threshold (1 week, 3 days, 1 day).",
        "Remind the assignee; escalate if not progressing.",
    ),
    _e("issue.overdue", "The issue's due date has passed.", "Escalate to the team lead; generate overdue reports."),
    _e("issue.blocked", "A blocking dependency (blocked_by) is added.", "Notify the assignee; surface blockers."),
    _e("issue.unblocked", "A blocking dependency is resolved.", "Notify the assignee that work can resume."),
    _e("issue.linked_to_milestone", "An issue is associated with a milestone.", "Update milestone progress."),
    _e("issue.linked_to_initiative", "An issue is associated with an initiative.", "Update initiative progress."),
    # 3. Milestones
    _e("milestone.created", "A new milestone is created.", "Schedule planning; set up tracking dashboards."),
    _e("milestone.updated", "Milestone details are modified.", "Recalculate timelines; notify the team."),
    _e(
        "milestone.status_changed",
        "Milestone status changes (planned, in_progress, completed, cancelled).",
        "Notify stakeholders; trigger release workflows.",
    ),
    _e("milestone.completed", "All issues of the milestone are closed.", "Generate release notes; retrospectives."),
    _e("milestone.due_date_approaching", "The milestone's due date is near.", "Send progress warnings; scope review."),
    _e("milestone.overdue", "The milestone's due date has passed.", "Escalate; adjust the timeline."),
    _e(
        "milestone.progress_updated",
        "Milestone completion changes by a 10% step.",
        "Update progress dashboards; predict completion.",
    ),
    # 4. Initiatives
    _e("initiative.created", "A new initiative is created.", "Create documentation; schedule a kickoff."),
    _e("initiative.updated", "Initiative details are modified.", "Sync roadmap tools; notify the team."),
    _e(
        "initiative.status_changed",
        "Initiative status changes (planning, in_progress, on_hold, completed, cancelled).",
        "Notify stakeholders; reallocate resources.",
    ),
    _e("initiative.completed", "An initiative is marked completed.", "Generate success metrics; retrospectives."),
    _e("initiative.issue_added", "An issue is linked to the initiative.", "Update scope; notify the owner."),
    # 5. Comments
    _e("comment.created", "A new comment is added to an issue.", "Trigger an AI response (Claude Code); notify."),
    _e("comment.updated", "A comment's content is edited.", "Track history; re-trigger AI analysis."),
    _e("comment.deleted", "A comment is removed.", "Audit logging; remove from activity feeds."),
    _e("comment.mention", "A user is @mentioned in a comment.", "Notify the mentioned user; create follow-ups."),
    # 6. Documents
    _e("document.created", "A new document is created.", "Index for search; trigger AI summarization."),
    _e("document.updated", "A document's content is modified.", "Re-index; track versions."),
    _e("document.linked", "A document is linked to a project, issue or milestone.", "Notify entity owners."),
    _e("document.deleted", "A document is removed.", "Archive; remove from the search index."),
    # 7. Tags
    _e("tag.created", "A new tag is created.", "Suggest applying it; create tag-based views."),
    _e("tag.applied", "A tag is added to an entity.", "Notify tag watchers; tag-specific automation."),
    _e("tag.removed", "A tag is removed from an entity.", "Update filtered views; audit tag usage."),
    # 8. Literature
    _e("literature.fetched", "An article or paper is fetched from a URL or RSS.", "Trigger AI summarization."),
    _e("literature.marked_read", "An item is marked as read.", "Track reading progress."),
    _e("literature.favorited", "An item is added to favorites.", "Add to curated lists; share with the team."),
    # 9. Terminal sessions
    _e("terminal.session_started", "A terminal session is created.", "Track development activity."),
    _e("terminal.session_ended", "A terminal session is closed.", "Analyze commands; track time spent."),
    _e("terminal.command_executed", "A command is executed in a terminal.", "Audit security-sensitive commands."),
    # 10. Calendar events
    _e("calendar.event_created", "A new calendar event is scheduled.", "Send invites; block time externally."),
    _e("calendar.event_starting_soon", "A calendar event starts in 15 minutes.", "Send reminders; open documents."),
    # 11. System
    _e("system.daily_digest", "Scheduled daily, at a configured time.", "Send daily summaries; activity reports."),
    _e("system.weekly_report", "Scheduled weekly.", "Team performance reports; plan the week."),
    _e("system.backup_completed", "A database backup finishes.", "Notify admins; verify backup integrity."),
    _e(
        "system.health_check_failed",
        "A system health check fails: an alert is raised (also: a subscription was auto-disabled).",
        "Alert on-call engineers; trigger incident response.",
    ),
    _e(
        "system.health_check_recovered",
        "A raised alert's condition ended (turbohooks' addition to the design's list).",
        "Resolve the incident; tell the channel the alert went to.",
    ),
    _e("system.ai_analysis_complete", "A background AI analysis finishes.", "Notify the requester; show results."),
)

EVENT_CATALOG: Final = MappingProxyType({info.event_type: info for info in _ENTRIES})
"""Every event type Turbo publishes, by name, in the design document's order."""


def _github(name: str, entity_type: str, trigger: str, description: str) -> EventTypeInfo:
    return EventTypeInfo(
        event_type=f"external.github.{name}",
        entity_type=entity_type,
        action=name,
        trigger=trigger,
        description=description,
        source="github",
    )


# The GitHub events the inbound webhook (POST /api/inbound/github) turns into events: the
# ones its payload reader knows (issues and pull requests, their comments and reviews, pushes)
# and a few repository-level ones whose scalar fields it keeps. The entity type is the one the
# inbound code sets: a comment on a pull request is about a github_pull_request.
_EXTERNAL: Final = (
    _github(
        "issues",
        "github_issue",
        "An issue of the repository is opened, edited, closed, labeled...",
        "Mirror into Turbo; notify.",
    ),
    _github(
        "issue_comment",
        "github_issue",
        "A comment on an issue or pull request is created, edited or deleted.",
        "Answer it (an AI reply); mirror the conversation.",
    ),
    _github(
        "pull_request",
        "github_pull_request",
        "A pull request is opened, synchronized, closed or merged.",
        "Link to the Turbo issue; move it to review or closed.",
    ),
    _github(
        "pull_request_review",
        "github_pull_request",
        "A review of a pull request is submitted, edited or dismissed.",
        "Notify the author; track review state.",
    ),
    _github(
        "pull_request_review_comment",
        "github_pull_request",
        "A comment on a pull request's diff.",
        "Notify the author; mirror review threads.",
    ),
    _github(
        "push", "github_repository", "Commits are pushed to a branch or tag.", "Link commits to issues; trigger builds."
    ),
    _github("create", "github_repository", "A branch or tag is created.", "Track branches per issue."),
    _github("delete", "github_repository", "A branch or tag is deleted.", "Clean up branch links."),
    _github(
        "release", "github_repository", "A release is published, edited or deleted.", "Announce; close the milestone."
    ),
    _github(
        "workflow_run",
        "github_repository",
        "A GitHub Actions workflow run is requested or completed.",
        "Report CI results on the Turbo issue.",
    ),
)

EXTERNAL_EVENT_TYPES: Final = MappingProxyType({info.event_type: info for info in _EXTERNAL})
"""The event types received from outside services, by name: ``external.github.<GitHub event name>``."""

EXTERNAL_SOURCES: Final = tuple(dict.fromkeys(info.source for info in _EXTERNAL))
"""The outside services events are received from (``github``)."""


def _platform(event_type: str, trigger: str, description: str) -> EventTypeInfo:
    return EventTypeInfo(
        event_type=event_type,
        entity_type="webhook_subscription",
        action=event_type.partition(".")[2],
        trigger=trigger,
        description=description,
        source=PLATFORM_SOURCE,
    )


# What turbohooks says about its own subscriptions. The entity is the subscription
# (entity_id: its id); data.current carries subscription_id, subscription_name, url and
# what happened (probe: attempt and status; loop stopped: the stopped event's id, type and depth).
_PLATFORM: Final = (
    _platform(
        "system.subscription_probe",
        "Sent (never published) to a disabled subscription's receiver to see whether it is back.",
        "Answer 2xx to re-enable the subscription; its backlog follows in stream order.",
    ),
    _platform(
        "system.subscription_probe_failed",
        "A probe of a disabled subscription got no 2xx; the next one is scheduled (backoff).",
        "Alert the receiver's owner; watch an endpoint that stays down.",
    ),
    _platform(
        "system.subscription_recovered",
        "A probe of a disabled subscription got a 2xx: it is active again, its backlog delivered.",
        "Close the incident opened by system.health_check_failed.",
    ),
    _platform(
        "system.causation_loop_stopped",
        "An event's causation chain (events caused by deliveries) went past TURBOHOOKS_MAX_CAUSATION_DEPTH: "
        "it was not delivered.",
        "Find the two integrations feeding each other; fix one of their rules.",
    ),
)

PLATFORM_EVENT_TYPES: Final = MappingProxyType({info.event_type: info for info in _PLATFORM})
"""The ``system.*`` types turbohooks publishes about its subscriptions (source ``turbohooks``)."""

KNOWN_EVENT_TYPES: Final = MappingProxyType({**EVENT_CATALOG, **EXTERNAL_EVENT_TYPES, **PLATFORM_EVENT_TYPES})
"""Every event type a pattern may name: Turbo's first, then the external ones, then turbohooks' own."""

ENTITY_TYPES: Final = tuple(dict.fromkeys(info.entity_type for info in _ENTRIES))
"""The entity types, in catalog order."""

assert len(EVENT_CATALOG) == len(_ENTRIES) == 59, "the design document's 58 event types and the alerts' recovery"


def event_type_info(event_type: str) -> EventTypeInfo | None:
    """The catalog entry of ``event_type`` (Turbo's or external), or ``None`` when it is not in the catalog."""
    return KNOWN_EVENT_TYPES.get(event_type)
