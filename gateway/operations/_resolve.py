"""What a person types for a subscription or a delivery: a whole id, a short id prefix, or a name.

Like git's abbreviated hashes: the first characters of an id (``SHORT_ID``
hex digits are shown in tables) name it when no other id starts with them.
A subscription is also named by its name. One place resolves both, for every
command that takes an id.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Final

from streams import EventValidationError, NotFoundError

if TYPE_CHECKING:
    from consumers import Engine, Subscription

__all__ = ("MIN_PREFIX", "SHORT_ID", "resolve_delivery", "resolve_subscription", "short_id")

SHORT_ID: Final = 8
"""Hex digits of an id shown in tables (the part before the first dash)."""
MIN_PREFIX: Final = 4
"""The shortest prefix taken as an id (as git: fewer would match too much)."""
_HEX: Final = re.compile(r"^[0-9a-f]+$")


def short_id(value: uuid.UUID) -> str:
    """The first ``SHORT_ID`` hex digits of ``value``."""
    return value.hex[:SHORT_ID]


def _prefix_range(text: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The smallest and largest id starting with ``text`` (dashes ignored), or ``None`` if it is no prefix."""
    digits = text.strip().lower().replace("-", "")
    if len(digits) < MIN_PREFIX or len(digits) > 32 or not _HEX.match(digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def _whole(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


async def resolve_subscription(engine: Engine, text: str, field: str = "subscription") -> Subscription:
    """The subscription ``text`` names: its id, a unique id prefix, or its name.

    ``NotFoundError`` if none; ``EventValidationError`` naming ``field`` and the
    candidates if a prefix fits several.
    """
    whole = _whole(text)
    if whole is not None:
        return await engine.service.get(whole)
    bounds = _prefix_range(text)
    found = await engine.subscriptions.matching(text.strip(), *(bounds or (None, None)))
    named = [sub for sub in found if sub.name == text.strip()]
    if named:  # a name wins over an id prefix that happens to be spelled like it
        return named[0]
    if len(found) == 1:
        return found[0]
    if not found:
        hint = "`turbohooks subscriptions list` lists them"
        if bounds is None:  # not spelled like an id: an input error, as a malformed id is
            raise EventValidationError(field, f"{text!r} is no subscription's id, id prefix or name ({hint})")
        raise NotFoundError(f"no subscription has the id or name {text!r} ({hint})")
    candidates = ", ".join(f"{short_id(sub.id)} ({sub.name})" for sub in found)
    raise EventValidationError(field, f"{text!r} fits several subscriptions: {candidates}; type more of the id")


async def resolve_delivery(engine: Engine, text: str, field: str = "delivery") -> uuid.UUID:
    """The id of the delivery ``text`` names: its id or a unique id prefix (``NotFoundError`` if none)."""
    whole = _whole(text)
    if whole is not None:
        return whole
    bounds = _prefix_range(text)
    if bounds is None:
        raise EventValidationError(field, f"{text!r} is not a delivery id (at least {MIN_PREFIX} hex digits)")
    found = await engine.deliveries.ids_between(*bounds)
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFoundError(f"no delivery id starts with {text!r} (`turbohooks deliveries list` lists them)")
    candidates = ", ".join(str(found_id) for found_id in found)
    raise EventValidationError(field, f"{text!r} fits several deliveries: {candidates}; type more of the id")
