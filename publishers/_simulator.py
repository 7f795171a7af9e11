"""A Turbo traffic simulator: realistic activity, published as Turbo would, for demos and load tests.

Projects are created, issues move through their statuses, get assigned, tagged,
blocked and linked; comments @mention people; milestones fill up and complete;
documents, literature, calendar events and terminal sessions come and go.
It never publishes ``system.health_check_failed`` (that one pages people) nor its
``system.health_check_recovered``, nor
what the scheduler and the milestone processor derive from the stream.
Updates go through :func:`~publishers._changes.emit_change`, so the derived
events appear as they would for real Turbo traffic.

With a seed, a run is reproducible: the same seed gives the same sequence of
event types and entity ids (ids start with ``sim<seed>-``); timestamps, due
dates and event ids still follow the clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec

from streams import Event, build_event

from ._changes import CLOSED_STATUS, SupportsEmitMany, emit_change

if TYPE_CHECKING:
    from ._publisher import PublishAck

__all__ = ("SimulationStats", "Simulator")

_USERS: Final = ("ada", "grace", "linus", "margaret", "alan", "barbara", "ken", "radia")
_PROJECTS: Final = ("Turbo Web", "Turbo API", "Mobile App", "Data Platform", "Docs Site", "Infra")
_VERBS: Final = ("Fix", "Add", "Refactor", "Investigate", "Document", "Speed up", "Test", "Remove")
_THINGS: Final = (
    "login flow",
    "webhook retries",
    "search index",
    "billing export",
    "dark mode",
    "CI pipeline",
    "rate limiter",
    "onboarding e-mails",
    "audit log",
    "file uploads",
)
_TAGS: Final = ("bug", "frontend", "backend", "performance", "security", "docs", "good-first-issue")
_STATUS_FLOW: Final = ("open", "in_progress", "review", "testing", CLOSED_STATUS)
_PRIORITIES: Final = ("low", "medium", "high", "critical")
_COMMANDS: Final = ("pytest -q", "git status", "make lint", "docker compose up", "alembic upgrade head", "npm test")
_REMARKS: Final = (
    "I can reproduce this on main.",
    "Pushed a fix, please take a look.",
    "This blocks the release, {mention} can you help?",
    "{mention} what do you think about this approach?",
    "Added a test for the edge case.",
    "Looks good to me. {mention} {mention2} FYI.",
    "Could this be related to the cache change?",
    "Ping {mention}: the review is waiting.",
)
_MAX_PICKS: Final = 50


class SimulationStats(msgspec.Struct, kw_only=True):
    """What a run published."""

    steps: int = 0
    """Simulated Turbo actions."""
    events: int = 0
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    """Events by type."""
    elapsed: float = 0.0


class _Counting:
    """Passes batches to the real publisher and counts them by type."""

    def __init__(self, publisher: SupportsEmitMany) -> None:
        self.publisher = publisher
        self.counts: Counter[str] = Counter()
        self.events = 0

    async def emit_many(self, events: Iterable[Event]) -> list[PublishAck]:
        batch = list(events)
        acks = await self.publisher.emit_many(batch)
        self.counts.update(e.event_type for e in batch)
        self.events += len(batch)
        return acks


class _Entity(msgspec.Struct, kw_only=True):
    id: str
    state: dict[str, Any]
    context: dict[str, str] = msgspec.field(default_factory=dict)


class Simulator:
    """Plays Turbo activity through a publisher (``EventPublisher``, or a fake in tests).

    ``rate`` is in events per second (None: as fast as the server acknowledges).
    """

    def __init__(
        self,
        publisher: SupportsEmitMany,
        *,
        seed: int | None = None,
        rate: float | None = 20.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().randrange(1, 1_000_000)
        self.rate = rate
        self.prefix = f"sim{self.seed}"
        self._out = _Counting(publisher)
        self._rng = random.Random(self.seed)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._serial: Counter[str] = Counter()
        self.world: dict[str, dict[str, _Entity]] = {
            kind: {}
            for kind in ("project", "milestone", "initiative", "issue", "comment", "document", "tag", "literature")
        }
        self._sessions: dict[str, _Entity] = {}

    # -- running -------------------------------------------------------------------

    async def run(
        self,
        *,
        duration: float | None = None,
        steps: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> SimulationStats:
        """Simulate until ``duration`` seconds passed or ``steps`` actions were played (whichever first)."""
        start = time.monotonic()
        played = 0
        while (steps is None or played < steps) and (duration is None or time.monotonic() - start < duration):
            await self.step()
            played += 1
            if on_progress is not None:
                on_progress(self._out.events)
            if self.rate:
                # Paced by events, not actions: an action publishes one to a handful.
                due = start + self._out.events / self.rate
                if duration is not None:
                    due = min(due, start + duration)
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
        return SimulationStats(
            steps=played,
            events=self._out.events,
            counts=dict(self._out.counts.most_common()),
            elapsed=time.monotonic() - start,
        )

    async def step(self) -> None:
        """Play one action, chosen at random among those that make sense now."""
        actions = self._actions()
        names = list(actions)
        weights = [actions[n][0] for n in names]
        for _ in range(_MAX_PICKS):
            name = self._rng.choices(names, weights)[0]
            if await actions[name][1]():
                return
        await self._create_issue()  # always possible once a project exists (and creates one if not)

    def _actions(self) -> dict[str, tuple[float, Callable[[], Awaitable[bool]]]]:
        active = sum(1 for p in self.world["project"].values() if p.state["status"] == "active")
        return {
            "project": (3.0 if active < 2 else 0.2 if active < 4 else 0.0, self._create_project),
            "milestone": (0.8, self._create_milestone),
            "initiative": (0.3, self._create_initiative),
            "issue": (4.0, self._create_issue),
            "progress": (6.0, self._progress_issue),
            "assign": (2.0, self._assign),
            "priority": (1.0, self._reprioritize),
            "tag": (1.5, self._tag),
            "untag": (0.4, self._untag),
            "block": (0.7, self._block),
            "unblock": (0.8, self._unblock),
            "link_milestone": (0.8, self._link_milestone),
            "link_initiative": (0.6, self._link_initiative),
            "comment": (3.0, self._comment),
            "edit_comment": (0.5, self._edit_comment),
            "delete_comment": (0.2, self._delete_comment),
            "document": (0.8, self._create_document),
            "edit_document": (0.5, self._edit_document),
            "literature": (0.6, self._fetch_literature),
            "read": (0.5, self._read_literature),
            "calendar": (0.5, self._schedule),
            "terminal": (0.8, self._terminal),
            "ai": (0.3, self._ai_analysis),
            "reopen": (0.3, self._reopen),
            "complete_initiative": (0.3, self._complete_initiative),
            "archive": (0.05, self._archive_project),
            "delete": (0.1, self._delete_something),
            "backup": (0.05, self._backup),
        }

    # -- helpers -------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        self._serial[kind] += 1
        return f"{self.prefix}-{kind}-{self._serial[kind]}"

    def _pick(self, kind: str, where: Callable[[_Entity], bool] = lambda _: True) -> _Entity | None:
        candidates = [e for e in self.world[kind].values() if where(e)]
        return self._rng.choice(candidates) if candidates else None

    def _actor(self, user: str | None = None) -> dict[str, str]:
        return {"type": "user", "name": f"{user or self._rng.choice(_USERS)}@turbo.dev"}

    def _title(self) -> str:
        return f"{self._rng.choice(_VERBS)} {self._rng.choice(_THINGS)}"

    async def _create(self, kind: str, state: dict[str, Any], context: dict[str, str]) -> _Entity:
        entity = _Entity(id=self._new_id(kind), state=state, context=context)
        await emit_change(
            self._out, kind, entity.id, previous=None, current=state, actor=self._actor(), context=context
        )
        if kind in self.world:
            self.world[kind][entity.id] = entity
        return entity

    async def _change(self, kind: str, entity: _Entity, actor: dict[str, str] | None = None, **fields: Any) -> None:
        previous = dict(entity.state)
        entity.state = {**entity.state, **fields}
        await emit_change(
            self._out,
            kind,
            entity.id,
            previous=previous,
            current=entity.state,
            actor=actor or self._actor(),
            context=entity.context,
        )

    async def _emit(self, event_type: str, entity_id: str, current: dict[str, Any], **kwargs: Any) -> None:
        event = build_event(event_type=event_type, entity_id=entity_id, data={"current": current}, **kwargs)
        await self._out.emit_many([event])

    def _now(self) -> datetime:
        return self._clock()

    # -- projects, milestones, initiatives -------------------------------------------

    async def _create_project(self) -> bool:
        n = self._serial["project"]
        name = _PROJECTS[n % len(_PROJECTS)] + (f" {n // len(_PROJECTS) + 1}" if n >= len(_PROJECTS) else "")
        state = {
            "name": name,
            "description": f"Everything about {name}",
            "status": "active",
            "priority": self._rng.choice(_PRIORITIES),
            "completion_percentage": 0.0,
        }
        await self._create("project", state, {})
        return True

    async def _create_milestone(self) -> bool:
        project = self._pick("project", lambda p: p.state["status"] == "active")
        if project is None or any(self._milestone_open_to(m, project.id) for m in self.world["milestone"].values()):
            return False  # one milestone open to new issues per project at a time
        due = (self._now() + timedelta(days=self._rng.randint(2, 30))).date().isoformat()
        state = {
            "name": f"Sprint {self._serial['milestone'] + 1}",
            "status": "planned",
            "due_date": due,
            "project_id": project.id,
            "completion_percentage": 0.0,
        }
        await self._create("milestone", state, {"project_id": project.id})
        return True

    async def _create_initiative(self) -> bool:
        if sum(1 for i in self.world["initiative"].values() if i.state["status"] != "completed") >= 3:
            return False
        state = {"name": f"Initiative: {self._rng.choice(_THINGS)}", "status": "planning"}
        await self._create("initiative", state, {})
        return True

    def _milestone_open_to(self, milestone: _Entity, project_id: str) -> bool:
        # Milestones take a handful of issues, so that they fill up and complete.
        return (
            milestone.state["project_id"] == project_id
            and milestone.state["status"] != "completed"
            and len(self._issues_of("milestone_id", milestone.id)) < 6
        )

    def _issues_of(self, field: str, owner: str) -> list[_Entity]:
        return [i for i in self.world["issue"].values() if i.state.get(field) == owner]

    async def _recompute(self, issue: _Entity) -> None:
        """Keep project and milestone completion in line with their issues (and complete a finished milestone)."""
        for kind, field in (("project", "project_id"), ("milestone", "milestone_id")):
            owner = issue.state.get(field)
            if not owner or owner not in self.world[kind]:
                continue
            entity = self.world[kind][owner]
            issues = self._issues_of(field, owner)
            closed = sum(1 for i in issues if i.state["status"] == CLOSED_STATUS)
            percentage = round(100.0 * closed / len(issues), 1) if issues else 0.0
            fields: dict[str, Any] = {"completion_percentage": percentage}
            if kind == "milestone":
                if percentage == 100.0:
                    fields["status"] = "completed"
                elif entity.state["status"] in ("planned", "completed"):
                    fields["status"] = "in_progress"
            if any(entity.state.get(k) != v for k, v in fields.items()):
                await self._change(kind, entity, **fields)

    async def _complete_initiative(self) -> bool:
        def mostly_done(i: _Entity) -> bool:
            issues = self._issues_of("initiative_id", i.id)
            closed = sum(1 for x in issues if x.state["status"] == CLOSED_STATUS)
            return i.state["status"] == "in_progress" and bool(issues) and 2 * closed >= len(issues)

        initiative = self._pick("initiative", mostly_done)
        if initiative is not None:
            await self._change("initiative", initiative, status="completed")
            return True
        initiative = self._pick("initiative", lambda i: i.state["status"] == "planning")
        if initiative is None:
            return False
        await self._change("initiative", initiative, status="in_progress")
        return True

    async def _archive_project(self) -> bool:
        active = [p for p in self.world["project"].values() if p.state["status"] == "active"]
        if len(active) < 3:
            return False
        # The most finished one goes (new projects then take its place).
        project = max(active, key=lambda p: p.state["completion_percentage"])
        await self._change("project", project, status="archived")
        return True

    async def _delete_something(self) -> bool:
        if self._rng.random() < 0.2:
            project = self._pick("project", lambda p: p.state["status"] == "archived")
            if project is None:
                return False
            del self.world["project"][project.id]
            await self._emit("project.deleted", project.id, project.state, actor=self._actor())
            return True
        document = self._pick("document")
        if document is None:
            return False
        del self.world["document"][document.id]
        await self._emit("document.deleted", document.id, document.state, actor=self._actor(), context=document.context)
        return True

    # -- issues --------------------------------------------------------------------

    async def _create_issue(self) -> bool:
        project = self._pick("project", lambda p: p.state["status"] == "active")
        if project is None:
            return await self._create_project()
        state: dict[str, Any] = {
            "title": self._title(),
            "type": self._rng.choice(("bug", "feature", "task")),
            "status": "open",
            "priority": self._rng.choice(_PRIORITIES),
            "project_id": project.id,
            "assignee": None,
            "tags": [],
            "blocked_by": [],
            "milestone_id": None,
            "initiative_id": None,
            "due_date": None,
        }
        if self._rng.random() < 0.4:
            state["due_date"] = (self._now() + timedelta(days=self._rng.randint(1, 14))).date().isoformat()
        milestone = self._pick("milestone", lambda m: self._milestone_open_to(m, project.id))
        if milestone is not None and self._rng.random() < 0.6:
            state["milestone_id"] = milestone.id
        issue = await self._create("issue", state, {"project_id": project.id})
        await self._recompute(issue)
        return True

    def _open_issue(self, where: Callable[[_Entity], bool] = lambda _: True) -> _Entity | None:
        return self._pick("issue", lambda i: i.state["status"] != CLOSED_STATUS and where(i))

    async def _progress_issue(self) -> bool:
        issue = self._open_issue(lambda i: not i.state["blocked_by"])
        if issue is None:
            return False
        status = _STATUS_FLOW[_STATUS_FLOW.index(issue.state["status"]) + 1]
        user = issue.state["assignee"] or self._rng.choice(_USERS)
        await self._change("issue", issue, actor=self._actor(user), status=status)
        if status == CLOSED_STATUS:
            # Closing frees the issues it blocked.
            for blocked in [i for i in self.world["issue"].values() if issue.id in i.state["blocked_by"]]:
                await self._change(
                    "issue", blocked, blocked_by=[b for b in blocked.state["blocked_by"] if b != issue.id]
                )
            await self._recompute(issue)
        return True

    async def _reopen(self) -> bool:
        issue = self._pick("issue", lambda i: i.state["status"] == CLOSED_STATUS)
        if issue is None:
            return False
        await self._change("issue", issue, status="open")
        await self._recompute(issue)
        return True

    async def _assign(self) -> bool:
        issue = self._open_issue()
        if issue is None:
            return False
        if issue.state["assignee"] and self._rng.random() < 0.25:
            await self._change("issue", issue, assignee=None)
        else:
            others = [u for u in _USERS if u != issue.state["assignee"]]
            await self._change("issue", issue, assignee=self._rng.choice(others))
        return True

    async def _reprioritize(self) -> bool:
        issue = self._open_issue()
        if issue is None:
            return False
        others = [p for p in _PRIORITIES if p != issue.state["priority"]]
        await self._change("issue", issue, priority=self._rng.choice(others))
        return True

    async def _tag(self) -> bool:
        issue = self._open_issue()
        if issue is None:
            return False
        missing = [t for t in _TAGS if t not in self.world["tag"]]
        name = self._rng.choice(_TAGS)
        if name in missing:
            tag = _Entity(id=name, state={"name": name, "color": self._rng.choice(("red", "blue", "green"))})
            await self._emit("tag.created", f"{self.prefix}-tag-{name}", tag.state, actor=self._actor())
            self.world["tag"][name] = tag
        tag_id = f"{self.prefix}-tag-{name}"
        if tag_id in issue.state["tags"]:
            return False
        await self._change("issue", issue, tags=[*issue.state["tags"], tag_id])
        return True

    async def _untag(self) -> bool:
        issue = self._pick("issue", lambda i: bool(i.state["tags"]))
        if issue is None:
            return False
        removed = self._rng.choice(issue.state["tags"])
        await self._change("issue", issue, tags=[t for t in issue.state["tags"] if t != removed])
        return True

    async def _block(self) -> bool:
        issue = self._open_issue()
        if issue is None:
            return False
        blocker = self._open_issue(lambda i: i.id != issue.id and issue.id not in i.state["blocked_by"])
        if blocker is None or blocker.id in issue.state["blocked_by"]:
            return False
        await self._change("issue", issue, blocked_by=[*issue.state["blocked_by"], blocker.id])
        return True

    async def _unblock(self) -> bool:
        issue = self._open_issue(lambda i: bool(i.state["blocked_by"]))
        if issue is None:
            return False
        await self._change("issue", issue, blocked_by=issue.state["blocked_by"][1:])
        return True

    async def _link_milestone(self) -> bool:
        issue = self._open_issue(lambda i: i.state["milestone_id"] is None)
        if issue is None:
            return False
        project_id = issue.state["project_id"]
        milestone = self._pick("milestone", lambda m: self._milestone_open_to(m, project_id))
        if milestone is None:
            return False
        await self._change("issue", issue, milestone_id=milestone.id)
        await self._recompute(issue)
        return True

    async def _link_initiative(self) -> bool:
        issue = self._open_issue(lambda i: i.state["initiative_id"] is None)
        initiative = self._pick(
            "initiative",
            lambda i: i.state["status"] != "completed" and len(self._issues_of("initiative_id", i.id)) < 5,
        )
        if issue is None or initiative is None:
            return False
        await self._change("issue", issue, initiative_id=initiative.id)
        return True

    # -- comments, documents, literature ---------------------------------------------

    def _remark(self, author: str) -> str:
        others = [u for u in _USERS if u != author]
        first, second = self._rng.sample(others, 2)
        return self._rng.choice(_REMARKS).format(mention=f"@{first}", mention2=f"@{second}")

    async def _comment(self) -> bool:
        issue = self._pick("issue")
        if issue is None:
            return False
        ai = self._rng.random() < 0.2
        author = "claude" if ai else self._rng.choice(_USERS)
        content = self._remark(author)
        state = {"issue_id": issue.id, "content": content, "author_type": "ai" if ai else "user", "author": author}
        context = {"issue_id": issue.id, "project_id": issue.state["project_id"]}
        actor = {"type": "ai", "name": "claude"} if ai else self._actor(author)
        comment = _Entity(id=self._new_id("comment"), state=state, context=context)
        await emit_change(self._out, "comment", comment.id, previous=None, current=state, actor=actor, context=context)
        self.world["comment"][comment.id] = comment
        await self._emit(
            "issue.commented",
            issue.id,
            {**issue.state, "comment_id": comment.id, "comment": content},
            actor=actor,
            context={**issue.context, "comment_id": comment.id},
        )
        return True

    async def _edit_comment(self) -> bool:
        comment = self._pick("comment", lambda c: c.state["author_type"] == "user")
        if comment is None:
            return False
        mention = self._rng.choice([u for u in _USERS if u != comment.state["author"]])
        content = f"{comment.state['content']} (edit: adding @{mention})"
        await self._change("comment", comment, actor=self._actor(comment.state["author"]), content=content)
        return True

    async def _delete_comment(self) -> bool:
        comment = self._pick("comment")
        if comment is None:
            return False
        del self.world["comment"][comment.id]
        await self._emit("comment.deleted", comment.id, comment.state, actor=self._actor(), context=comment.context)
        return True

    async def _create_document(self) -> bool:
        project = self._pick("project")
        if project is None:
            return False
        state = {
            "title": f"{self._rng.choice(('Design', 'Runbook', 'RFC', 'Notes'))}: {self._rng.choice(_THINGS)}",
            "content": "Draft.",
            "project_id": project.id,
            "issue_id": None,
            "milestone_id": None,
        }
        await self._create("document", state, {"project_id": project.id})
        return True

    async def _edit_document(self) -> bool:
        document = self._pick("document")
        if document is None:
            return False
        if self._rng.random() < 0.5:
            issue = self._pick("issue", lambda i: i.state["project_id"] == document.state["project_id"])
            if issue is not None and document.state["issue_id"] != issue.id:
                await self._change("document", document, issue_id=issue.id)
                return True
        await self._change("document", document, content=f"{document.state['content']} More detail.")
        return True

    async def _fetch_literature(self) -> bool:
        state = {
            "title": f"On {self._rng.choice(_THINGS)}",
            "url": f"https://example.com/articles/{self._serial['literature'] + 1}",
            "source": self._rng.choice(("rss", "url")),
            "is_read": False,
            "is_favorite": False,
        }
        await self._create("literature", state, {})
        return True

    async def _read_literature(self) -> bool:
        item = self._pick("literature", lambda i: not (i.state["is_read"] and i.state["is_favorite"]))
        if item is None:
            return False
        if not item.state["is_read"]:
            await self._change("literature", item, is_read=True)
        else:
            await self._change("literature", item, is_favorite=True)
        return True

    # -- calendar, terminal, AI -------------------------------------------------------

    async def _schedule(self) -> bool:
        start = self._now() + timedelta(minutes=self._rng.randint(5, 180))
        project = self._pick("project")
        state = {
            "title": self._rng.choice(("Standup", "Sprint planning", "Design review", "Retro", "1:1")),
            "start_time": start.replace(microsecond=0).isoformat(),
            "duration_minutes": self._rng.choice((15, 30, 60)),
            "attendees": self._rng.sample(_USERS, 3),
        }
        await self._create("calendar", state, {"project_id": project.id} if project else {})
        return True

    async def _terminal(self) -> bool:
        if self._sessions and self._rng.random() < 0.7:
            session_id = self._rng.choice(sorted(self._sessions))
            session = self._sessions[session_id]
            if self._rng.random() < 0.75:
                command = self._rng.choice(_COMMANDS)
                await self._emit(
                    "terminal.command_executed",
                    session_id,
                    {**session.state, "command": command, "exit_code": self._rng.choice((0, 0, 0, 1))},
                    context=session.context,
                )
            else:
                del self._sessions[session_id]
                await self._emit("terminal.session_ended", session_id, session.state, context=session.context)
            return True
        issue = self._open_issue()
        session_id = self._new_id("terminal")
        state = {"user": self._rng.choice(_USERS), "shell": "bash", "issue_id": issue.id if issue else None}
        context = {"terminal_session_id": session_id, **({"issue_id": issue.id} if issue else {})}
        session = _Entity(id=session_id, state=state, context=context)
        self._sessions[session.id] = session
        await self._emit("terminal.session_started", session.id, state, context=session.context)
        return True

    async def _backup(self) -> bool:
        await self._emit(
            "system.backup_completed",
            self._new_id("backup"),
            {"size_bytes": self._rng.randint(10, 500) << 20, "duration_seconds": self._rng.randint(5, 120)},
            actor={"type": "system", "name": "turbo-backup"},
        )
        return True

    async def _ai_analysis(self) -> bool:
        issue = self._pick("issue")
        if issue is None:
            return False
        await self._emit(
            "system.ai_analysis_complete",
            self._new_id("analysis"),
            {
                "issue_id": issue.id,
                "summary": f"Likely cause: {self._rng.choice(_THINGS)}",
                "suggested_priority": self._rng.choice(_PRIORITIES),
            },
            actor={"type": "ai", "name": "claude"},
            context={"issue_id": issue.id, "project_id": issue.state["project_id"]},
        )
        return True
