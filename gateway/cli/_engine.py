"""What the subscription and delivery commands share: an engine per command, ids as people type them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeAlias

import typer

from streams import EventValidationError

from ._common import load_settings, run

if TYPE_CHECKING:
    from consumers import Engine

__all__ = ("SubscriptionArg", "WideOption", "option_named", "shown_id", "with_engine")

SubscriptionArg: TypeAlias = Annotated[
    str, typer.Argument(help="Subscription id, its first characters (as in tables) or its name.", show_default=False)
]
WideOption: TypeAlias = Annotated[
    bool, typer.Option("--wide", help="Show whole ids (tables show the first 8 hex digits).")
]

_OPTIONS = {
    "integration_config": "--config",
    "headers": "--header",
    "event_types": "--event-types",
    "filters": "--filter",
    "template_content_type": "--content-type",
}


def with_engine(body: Callable[[Engine], Awaitable[None]]) -> None:
    """Open the engine (NATS, streams, database), run ``body``; errors are one line each, in ``run()``."""
    settings = load_settings()

    async def main() -> None:
        # The SQL side is imported here, not at start: `turbohooks worker` loads this module too.
        from consumers import open_engine

        async with open_engine(settings, name="cli") as engine:
            await body(engine)

    run(main)


def option_named(exc: EventValidationError) -> EventValidationError:
    """The service's refusal of a field, said with its option (``retry_schedule[2]`` → ``--retry-schedule``)."""
    match = re.match(r"([a-z_]+)(.*)", exc.field)
    root, rest = (match.group(1), match.group(2)) if match else (exc.field, "")
    option = _OPTIONS.get(root, "--" + root.replace("_", "-"))
    detail = rest[1:] if rest.startswith(".") else ""
    return EventValidationError(f"{option} {detail}".strip(), exc.problem)


def shown_id(value: uuid.UUID, wide: bool) -> str:
    """An id in a table: whole with ``--wide``, else its first 8 hex digits (which the commands accept)."""
    from ..operations import short_id

    return str(value) if wide else short_id(value)
