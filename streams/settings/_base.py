"""What every role's settings object shares: it is built from the table, never by reading the environment itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import msgspec

__all__ = ("RoleSettings",)


class RoleSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the settings objects, one per role (``ROLE`` names the table's rows it is built from)."""

    ROLE: ClassVar[str]

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Self:
        """Build from the table's values of this role (field → value); a role with derived defaults overrides it."""
        return cls(**values)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """Fields taken from the environment beyond the table's rows (none but GitHub's named tokens)."""
        return {}

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, config_file: Path | None = None, **overrides: Any
    ) -> Self:
        """Defaults ← the settings file ← ``environ`` (default ``os.environ``); ``overrides`` win over all.

        A thin layer over :func:`streams.settings.load_config`: a program reads the
        configuration once (``config = load_config()``) and asks it for each role.
        """
        from ._load import load_config  # _load builds these classes: import it when called

        return load_config(environ, config_file=config_file).role(cls, **overrides)
