"""Event type ↔ subject mapping, and subscription patterns → JetStream filter subjects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ._catalog import KNOWN_EVENT_TYPES
from ._errors import EventValidationError

__all__ = (
    "SUBJECT_ROOT",
    "event_subject",
    "event_type_of_subject",
    "filter_subjects",
    "match_event_types",
    "normalize_patterns",
)

SUBJECT_ROOT: Final = "turbo"
"""Every event lives under ``turbo.>``; internal subjects never do."""

_ALL: Final = "*"


def event_subject(event_type: str) -> str:
    """The subject an event of ``event_type`` is published on: ``turbo.`` + the type."""
    return f"{SUBJECT_ROOT}.{event_type}"


def event_type_of_subject(subject: str) -> str:
    """The inverse of :func:`event_subject`."""
    prefix = SUBJECT_ROOT + "."
    if not subject.startswith(prefix):
        raise EventValidationError("subject", f"{subject!r} is not under {SUBJECT_ROOT}.>")
    return subject[len(prefix) :]


def _matches(pattern: str, event_type: str) -> bool:
    if pattern == _ALL:
        return True
    p_tokens = pattern.split(".")
    e_tokens = event_type.split(".")
    return len(p_tokens) == len(e_tokens) and all(p in ("*", e) for p, e in zip(p_tokens, e_tokens, strict=True))


def normalize_patterns(patterns: Iterable[str], *, field: str = "event_types") -> list[str]:
    """Check subscription patterns against the catalog; return them cleaned, in order.

    A pattern is an event type (``issue.created``), an entity wildcard (``issue.*``),
    an action wildcard (``*.created``) or ``*`` for every event; the external types
    have three tokens (``external.github.issues``, ``external.github.*``). A pattern
    that is malformed, or that matches no type of the catalog, is refused naming it.
    """
    cleaned: list[str] = []
    for index, raw in enumerate(patterns):
        pattern = raw.strip()
        if pattern.startswith(SUBJECT_ROOT + "."):
            pattern = pattern[len(SUBJECT_ROOT) + 1 :]
        where = f"{field}[{index}]"
        if not pattern:
            raise EventValidationError(where, "is empty")
        if pattern != _ALL:
            tokens = pattern.split(".")
            if len(tokens) not in (2, 3) or not all(tokens) or any(t != "*" and ("*" in t or ">" in t) for t in tokens):
                raise EventValidationError(
                    where,
                    f"{raw!r} is not an event type pattern; use 'issue.created', 'issue.*', '*.created', "
                    "'external.github.*' or '*'",
                )
        if not any(_matches(pattern, event_type) for event_type in KNOWN_EVENT_TYPES):
            raise EventValidationError(where, f"{raw!r} matches no event type of the catalog (see `turbohooks events`)")
        if pattern not in cleaned:
            cleaned.append(pattern)
    if not cleaned:
        raise EventValidationError(field, "needs at least one event type pattern")
    return cleaned


def match_event_types(patterns: Iterable[str]) -> list[str]:
    """The catalog event types (Turbo's, then the external ones) matched by any of ``patterns``, in catalog order."""
    pats = list(patterns)
    return [t for t in KNOWN_EVENT_TYPES if any(_matches(p, t) for p in pats)]


def _covers(a: str, b: str) -> bool:
    """Whether every subject matched by pattern ``b`` is matched by pattern ``a``."""
    if a == _ALL:
        return True
    a_tokens, b_tokens = a.split("."), b.split(".")
    if b == _ALL or len(a_tokens) != len(b_tokens):
        return False
    return all(x in ("*", y) for x, y in zip(a_tokens, b_tokens, strict=True))


def _overlap(a: str, b: str) -> bool:
    if _ALL in (a, b):
        return True
    a_tokens, b_tokens = a.split("."), b.split(".")
    if len(a_tokens) != len(b_tokens):
        return False  # subjects of different lengths: no subject matches both
    return all("*" in (x, y) or x == y for x, y in zip(a_tokens, b_tokens, strict=True))


def filter_subjects(patterns: Iterable[str]) -> list[str]:
    """JetStream filter subjects for ``patterns``, with overlaps folded away.

    JetStream refuses a consumer whose filter subjects overlap, so a pattern
    covered by another is dropped, and patterns that overlap without one covering
    the other (``issue.*`` with ``*.created``) are expanded to the catalog types
    they match, keeping whole-group wildcards (``issue.*``, ``external.github.*``)
    where every type of a group is in.
    """
    pats = normalize_patterns(patterns)
    kept = [p for p in pats if not any(q != p and _covers(q, p) for q in pats)]
    if _ALL in kept:
        return [f"{SUBJECT_ROOT}.>"]
    if not any(_overlap(a, b) for i, a in enumerate(kept) for b in kept[i + 1 :]):
        return [event_subject(p) for p in kept]
    wanted = set(match_event_types(kept))
    subjects: list[str] = []
    groups: dict[str, list[str]] = {}
    for event_type in KNOWN_EVENT_TYPES:
        groups.setdefault(event_type.rpartition(".")[0], []).append(event_type)
    for group, members in groups.items():
        if not any(t in wanted for t in members):
            continue
        if all(t in wanted for t in members):
            subjects.append(event_subject(f"{group}.*"))
        else:
            subjects.extend(event_subject(t) for t in members if t in wanted)
    return subjects
