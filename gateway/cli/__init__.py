"""The `turbohooks` command line."""

from ._main import app, main

__all__ = ("app", "main")
