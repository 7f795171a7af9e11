"""The CLI reference, ``docs/cli.md``, generated from the commands themselves.

It walks typer's click command tree (typer carries its own copy of click, so
the objects are read by their attributes, not checked against ``click`` classes).

``python -m gateway.cli.docs`` rewrites it; ``python -m gateway.cli.docs --check``
exits 1 when it differs from what the commands say (a test runs that), so the
reference cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import typer

__all__ = ("CLI_DOC", "main", "markdown")

CLI_DOC: Final = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _is_flag(param: Any) -> bool:
    return param.param_type_name == "option" and bool(param.is_flag)


def _kind(param: Any) -> str:
    if _is_flag(param):
        return "flag"
    return "repeatable" if param.multiple else "value"


def _default(param: Any) -> str:
    if param.required:
        return "required"
    default = param.default
    if _is_flag(param) or default is None or default in ((), []):
        return ""
    return f"`{default}`"


def _names(param: Any) -> str:
    if param.param_type_name == "argument":
        return f"`{param.name.upper()}`"
    return ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])


def _usage(title: str, params: list[Any]) -> str:
    pieces = [title, "[OPTIONS]"] if any(p.param_type_name == "option" for p in params) else [title]
    for param in params:
        if param.param_type_name == "argument":
            pieces.append(param.name.upper() if param.required else f"[{param.name.upper()}]")
    return " ".join(pieces)


def _command(lines: list[str], path: list[str], command: Any) -> None:
    title = " ".join(path)
    lines += [f"## `{title}`", ""]
    help_text = (command.help or "").strip()
    if help_text:
        lines += [help_text, ""]
    params = [p for p in command.params if p.name != "help"]
    lines += ["```", _usage(title, params), "```", ""]
    if params:
        lines += ["| argument or option | kind | default | meaning |", "| --- | --- | --- | --- |"]
        for param in params:
            meaning = param.help or ""
            lines.append(f"| {_names(param)} | {_kind(param)} | {_default(param)} | {_cell(meaning)} |")
        lines.append("")


def _walk(lines: list[str], path: list[str], command: Any) -> None:
    if hasattr(command, "commands"):  # a group
        if len(path) > 1:
            lines += [f"## `{' '.join(path)} …`", "", (command.help or "").strip(), ""]
        for name, sub in command.commands.items():  # registration order: the order of `--help`
            if not sub.hidden:
                _walk(lines, [*path, name], sub)
    else:
        _command(lines, path, command)


def markdown(app: typer.Typer | None = None) -> str:
    """``docs/cli.md``: every command of ``app`` (the ``turbohooks`` command by default), in ``--help`` order."""
    if app is None:
        from ._main import app as turbohooks

        app = turbohooks
    root = typer.main.get_command(app)
    lines = [
        "# The `turbohooks` command",
        "",
        "<!-- Generated from the commands by `python -m gateway.cli.docs`; edit their help, not this file. -->",
        "",
        (root.help or "").strip(),
        "",
        "Every command reads the same settings (the environment and `turbohooks.toml`, see the README's "
        "Settings). A subscription is named by its id, the first characters of its id (as tables show them) "
        "or its name; a delivery by its id or the first characters of it.",
        "",
    ]
    _walk(lines, ["turbohooks"], root)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``docs/cli.md``; with ``--check``, only say whether it is up to date (exit 1 if not)."""
    args = sys.argv[1:] if argv is None else argv
    text = markdown()
    if "--check" in args:
        current = CLI_DOC.read_text(encoding="utf-8") if CLI_DOC.exists() else ""
        if current != text:
            print(f"{CLI_DOC} is out of date: run `python -m gateway.cli.docs`", file=sys.stderr)
            return 1
        return 0
    CLI_DOC.write_text(text, encoding="utf-8")
    print(f"wrote {CLI_DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
