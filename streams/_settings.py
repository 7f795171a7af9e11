"""Kept for ``from streams._settings import ...`` in other packages; the settings live in :mod:`streams.settings`."""

from .settings import SETTINGS_VARIABLES, Settings, parse_duration, parse_size

__all__ = ("SETTINGS_VARIABLES", "Settings", "parse_duration", "parse_size")
