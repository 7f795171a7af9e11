"""`turbohooks audit`: the audit log of admin actions, newest first (the same as ``GET /api/audit``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import console, load_settings, print_json, run
from ._safe import SafeTable, safe

__all__ = ("register",)


def audit(
    action: Annotated[str | None, typer.Option(help="Only this action (create, rotate, retry, sign-in, ...).")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target (subscription:<id>, delivery:<id>).")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (token:<hash>, local:<user>).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Who did what, when and from where: every admin action of the API and the CLI (never a secret)."""
    settings = load_settings()

    async def main() -> None:
        from consumers import open_engine

        async with open_engine(settings, name="cli-audit") as engine:
            assert engine.audit is not None
            entries = await engine.audit.list(action=action, target=target, actor=actor, limit=limit)
            total = await engine.audit.count(action=action, target=target, actor=actor)
        if as_json:
            print_json(entries)
            return
        table = SafeTable(title=f"{len(entries)} of {total} audit entries")
        for column in ("at", "actor", "from", "action", "target", "details"):
            table.add_column(column)
        for entry in entries:
            details = ", ".join(f"{key}={value}" for key, value in entry.details.items())
            table.add_row(
                f"{entry.at:%Y-%m-%d %H:%M:%S}",
                entry.actor,
                entry.source_ip or "local",
                entry.action,
                entry.target,
                details,
            )
        console.print(table)
        if total > len(entries):
            console.print(f"… {total - len(entries)} older entries ({safe('--limit')} shows more)")

    run(main)


def register(app: typer.Typer) -> None:
    """Add ``turbohooks audit``."""
    app.command("audit")(audit)
