"""GitHub inbound: verify a webhook delivery and turn it into a ``turbo.external.github.<event>`` event.

For the gateway's ``POST /api/inbound/github``; a worker never imports it. The
events are built through the catalog (:data:`streams.EXTERNAL_EVENT_TYPES`), so a
pattern such as ``external.github.issues`` names them; a GitHub event the catalog
does not list is acknowledged (200, ``ignored``) and publishes nothing: an error
answer would make GitHub mark the hook's deliveries failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal

import msgspec

from streams import (
    EXTERNAL_EVENT_TYPES,
    Actor,
    CausationChain,
    Event,
    EventValidationError,
    TurbohooksError,
    build_event,
)

from ..core import truncate
from ._plan import MARKER_PREFIX

__all__ = (
    "GitHubSignatureError",
    "InboundResult",
    "github_event",
    "github_event_type",
    "receive_github_webhook",
    "verify_github_signature",
)

_EVENT_NAME: Final = re.compile(r"^[a-z_]{1,64}$")
_MARKER: Final = re.compile(r"<!-- turbohooks:issue=([^ >]{1,200}) -->")
_INBOUND_NAMESPACE: Final = uuid.UUID("1b0f0d56-3f51-4a5f-9d0e-0b7b3e8f2c41")
_TEXT_CAP: Final = 20000
_PING: Final = "external.github.ping"
"""GitHub's hello when a hook is created: answered ``pong``, never an event."""


class GitHubSignatureError(TurbohooksError):
    """A GitHub webhook delivery's ``X-Hub-Signature-256`` is missing or wrong."""


class InboundResult(msgspec.Struct, kw_only=True):
    """What the gateway answers GitHub, and what was published."""

    status: int
    detail: str
    event_id: str | None = None
    subject: str | None = None


def verify_github_signature(secret: str, body: bytes, header: str | None) -> None:
    """Check ``X-Hub-Signature-256`` (``sha256=`` + hex HMAC of the body, keyed by the hook's secret)."""
    if not secret:
        raise GitHubSignatureError("turbohooks: no GitHub webhook secret is configured")
    if not header:
        raise GitHubSignatureError("turbohooks: X-Hub-Signature-256 is missing")
    scheme, _, received = header.strip().partition("=")
    if scheme != "sha256" or not received:
        raise GitHubSignatureError("turbohooks: X-Hub-Signature-256 is not sha256=<hex>")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received.lower()):
        raise GitHubSignatureError("turbohooks: X-Hub-Signature-256 does not match the body")


def _login(user: object) -> str:
    return str(user.get("login") or "") if isinstance(user, Mapping) else ""


def _issue_view(issue: Mapping[str, Any]) -> dict[str, Any]:
    labels = [label.get("name") for label in issue.get("labels") or [] if isinstance(label, Mapping)]
    return {
        "number": issue.get("number"),
        "title": issue.get("title"),
        "state": issue.get("state"),
        "html_url": issue.get("html_url"),
        "body": truncate(str(issue.get("body") or ""), _TEXT_CAP),
        "labels": labels,
        "user": _login(issue.get("user")),
    }


def _inbound_data(name: str, payload: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Entity type, entity id and ``data.current`` of one GitHub delivery (the parts worth keeping)."""
    repository = payload.get("repository")
    repo = str(repository.get("full_name") or "") if isinstance(repository, Mapping) else ""
    current: dict[str, Any] = {"event": name, "action": payload.get("action"), "repository": repo}
    issue = payload.get("issue")
    pull = payload.get("pull_request")
    if isinstance(issue, Mapping):
        current["issue"] = _issue_view(issue)
        comment = payload.get("comment")
        if isinstance(comment, Mapping):
            current["comment"] = {
                "id": comment.get("id"),
                "body": truncate(str(comment.get("body") or ""), _TEXT_CAP),
                "html_url": comment.get("html_url"),
                "user": _login(comment.get("user")),
            }
        kind = "github_pull_request" if "pull_request" in issue else "github_issue"
        return kind, f"{repo}#{issue.get('number')}", current
    if isinstance(pull, Mapping):
        current["pull_request"] = {
            **_issue_view(pull),
            "merged": pull.get("merged"),
            "head": (pull.get("head") or {}).get("ref") if isinstance(pull.get("head"), Mapping) else None,
            "base": (pull.get("base") or {}).get("ref") if isinstance(pull.get("base"), Mapping) else None,
        }
        return "github_pull_request", f"{repo}#{pull.get('number')}", current
    if name == "push":
        listed = payload.get("commits")
        commits: list[Any] = listed if isinstance(listed, list) else []
        current.update(
            ref=payload.get("ref"),
            before=payload.get("before"),
            after=payload.get("after"),
            compare=payload.get("compare"),
            commits=[
                {
                    "id": c.get("id"),
                    "message": truncate(str(c.get("message") or ""), 1000),
                    "author": (c.get("author") or {}).get("name") if isinstance(c.get("author"), Mapping) else None,
                }
                for c in commits[:20]
                if isinstance(c, Mapping)
            ],
        )
        return "github_repository", repo or "unknown", current
    current.update({k: v for k, v in payload.items() if isinstance(v, str | int | float | bool) and k not in current})
    return "github_repository", repo or "unknown", current


def github_event_type(event_name: str | None) -> str:
    """``external.github.<name>`` of an ``X-GitHub-Event`` header (checked to be a GitHub event name).

    Whether the catalog lists it is :data:`~streams.EXTERNAL_EVENT_TYPES`' to say.
    """
    name = (event_name or "").strip()
    if not _EVENT_NAME.match(name):
        raise EventValidationError("X-GitHub-Event", f"{event_name!r} is not a GitHub event name")
    return f"external.github.{name}"


def github_event(event_name: str | None, delivery_id: str | None, body: bytes) -> Event | None:
    """The ``external.github.<event>`` event of one delivery; ``None`` for GitHub's ``ping``.

    Built by :func:`streams.build_event`: an event GitHub names that is not in the
    catalog raises :class:`~streams.EventValidationError` (``event_type``). The
    event id is derived from ``X-GitHub-Delivery``, so GitHub's redelivery
    of the same delivery is stored once. When the issue is one turbohooks
    mirrored, ``context.issue_id`` names the Turbo issue; an echo of the
    mirror's own writes is marked ``actor.type = "system"`` and ``echo: true``.
    """
    event_type = github_event_type(event_name)
    if event_type == _PING:
        return None
    name = event_type.removeprefix("external.github.")
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise EventValidationError("body", f"is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise EventValidationError("body", "is not a JSON object")
    entity_type, entity_id, current = _inbound_data(name, payload)
    given = payload.get("sender")
    sender: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    issue_body = str((current.get("issue") or current.get("pull_request") or {}).get("body") or "")
    comment_body = str((current.get("comment") or {}).get("body") or "")
    marker = _MARKER.search(issue_body)
    echo = MARKER_PREFIX in comment_body or (
        name == "issues" and marker is not None and payload.get("action") == "opened"
    )
    current["echo"] = echo
    actor_type: Literal["user", "system"] = "system" if echo or sender.get("type") == "Bot" else "user"
    event = build_event(
        event_type=event_type,
        event_id=uuid.uuid5(_INBOUND_NAMESPACE, delivery_id) if delivery_id else uuid.uuid4(),
        entity_type=entity_type,
        entity_id=entity_id,
        actor=Actor(
            type=actor_type,
            name=_login(sender) or "github",
            metadata={"source": "github", "github_id": sender.get("id"), "html_url": sender.get("html_url")},
        ),
        data={"current": current},
        context={"issue_id": marker.group(1) if marker else None},
    )
    # The catalog's action of an external type is GitHub's event name; the delivery says what happened.
    return msgspec.structs.replace(event, action=str(payload.get("action") or name))


Mirrors = Callable[[], Awaitable[Mapping[str, uuid.UUID]]]
"""The GitHub subscriptions by the repository they mirror (``owner/repo`` in lower case)."""


def _repository(body: bytes) -> str | None:
    with contextlib.suppress(msgspec.DecodeError, AttributeError, TypeError):
        repo = msgspec.json.decode(body).get("repository") or {}
        name = repo.get("full_name")
        return name.lower() if isinstance(name, str) else None
    return None


async def _with_origin(event: Event, body: bytes, mirrors: Mirrors | None) -> Event:
    """An echo of a mirror's own write, marked as caused by the subscription mirroring that repository.

    Loop prevention then never delivers it back to that subscription (its own API
    call's consequence). The delivery that made the write is not known here, so the
    chain is one deep.
    """
    if mirrors is None or event.data.current.get("echo") is not True:
        return event
    repository = _repository(body)
    origin = (await mirrors()).get(repository) if repository else None
    if origin is None:
        return event
    return msgspec.structs.replace(event, chain=CausationChain(depth=1, subscription_id=origin))


async def receive_github_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    publish: Callable[[Event], Awaitable[object]],
    mirrors: Mirrors | None = None,
) -> InboundResult:
    """The whole inbound route: verify, build the event, publish; what to answer GitHub.

    401 and nothing published for a bad or missing signature; 400 for a
    delivery that is not JSON or names no event; 200 for ``ping``; 200
    ``ignored`` and nothing published for an event the catalog does not list;
    202 once the event is stored. ``mirrors``: the GitHub subscriptions by
    repository, asked for an echo of a mirror's write (marked as that
    subscription's consequence: see :func:`_with_origin`).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        verify_github_signature(secret, body, lowered.get("x-hub-signature-256"))
    except GitHubSignatureError as exc:
        return InboundResult(status=401, detail=str(exc))
    name = lowered.get("x-github-event")
    try:
        event_type = github_event_type(name)
        if event_type != _PING and event_type not in EXTERNAL_EVENT_TYPES:
            return InboundResult(status=200, detail=f"ignored: {event_type} is not in the catalog")
        event = github_event(name, lowered.get("x-github-delivery"), body)
    except EventValidationError as exc:
        return InboundResult(status=400, detail=str(exc))
    if event is None:
        return InboundResult(status=200, detail="pong")
    event = await _with_origin(event, body, mirrors)
    await publish(event)
    return InboundResult(status=202, detail="published", event_id=str(event.event_id), subject=event.subject)
