"""User-given text in the terminal: always plain, never rich markup, never a control sequence.

A subscription's name, a URL, an error message or an event's title is data: in
rich markup ``[/x]`` is a closing tag (a crash) and ``[fd00::1]`` a style (it
vanishes), and in a terminal ESC or a bidi override rewrites what is shown.
:func:`safe` makes a value fit for a markup f-string (controls made visible, then
escaped); :class:`SafeTable` is ``rich.table.Table`` whose string cells are plain
text (a styled cell is given as :func:`styled`).
"""

from __future__ import annotations

import re
from typing import Any, Final

from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ("SafeTable", "plain", "safe", "styled", "visible")

# C0 and C1 controls, DEL, and the bidirectional controls (embeddings, overrides, isolates, marks).
_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value: object) -> str:
    """``value`` as text whose control and bidi characters are shown as ``\\xNN``/``\\uNNNN`` escapes."""
    text = str(value)
    return _UNSAFE.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def safe(value: object) -> str:
    """``value`` for a markup f-string: shown exactly as written (controls made visible)."""
    return escape(visible(value))


def plain(value: object) -> Text:
    """``value`` as a rich ``Text`` that is never parsed for markup."""
    return Text(visible(value))


def styled(value: object, style: str) -> Text:
    """``value`` in ``style`` (a colour), plain otherwise."""
    return Text(visible(value), style=style)


class SafeTable(Table):
    """A ``Table`` whose ``str`` cells are plain text (``Text`` cells keep their style)."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(plain(c) if isinstance(c, str) else c for c in renderables), **kwargs)
