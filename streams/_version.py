"""The product's version, read once from the installed distribution's metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Final

__all__ = ("USER_AGENT", "VERSION")


def _version() -> str:
    try:
        return version("turbohooks")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION: Final = _version()
"""``turbohooks``'s version (``pyproject.toml`` is the one place it is written)."""
USER_AGENT: Final = f"turbohooks/{VERSION}"
"""The ``User-Agent`` of every request the product makes."""
