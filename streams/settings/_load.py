"""The layers: defaults ← the settings file ← the environment, read once into a :class:`Config`.

The file is ``$TURBOHOOKS_CONFIG``, else ``<data dir>/turbohooks.toml`` when it
exists. Its keys are the variables' names in lower case (``webhook_allow_http =
true``); tables join their names with ``_`` (``[smtp] host = ...`` is
``smtp_host``). A key that is not a setting, or a bad value in either layer,
raises :class:`~streams.ConfigError` naming it; an empty variable counts as unset.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final, TypeVar

from .._errors import ConfigError
from ._base import RoleSettings
from ._table import CONFIG_VARIABLE, SETTINGS_TABLE, Variable

__all__ = ("CONFIG_FILE", "Config", "load_config")

CONFIG_FILE: Final = "turbohooks.toml"
"""The settings file's name in the data dir."""
_DEFAULT_DATA_DIR: Final = Path(".turbohooks")
_BY_KEY: Final = {row.key: row for row in SETTINGS_TABLE.values()}

R = TypeVar("R", bound=RoleSettings)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name.lower()] = value
    return flat


def _as_text(value: object) -> str:
    """A TOML value as the text the parsers read (``true``, ``30``, ``a,b``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_as_text(item) for item in value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _read_file(path: Path) -> dict[str, tuple[Variable, str]]:
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(CONFIG_VARIABLE, f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(CONFIG_VARIABLE, f"{path} is not TOML: {exc}") from None
    values: dict[str, tuple[Variable, str]] = {}
    for key, value in _flatten(document).items():
        row = _BY_KEY.get(key)
        if row is None or row.name == CONFIG_VARIABLE:
            raise ConfigError(
                key, f"in {path}: is not a setting of turbohooks (the README's settings table lists them)"
            )
        values[row.name] = (row, _as_text(value))
    return values


def config_path(environ: Mapping[str, str]) -> Path | None:
    """The settings file to read: ``$TURBOHOOKS_CONFIG`` (it must exist), else the data dir's, if any."""
    named = environ.get(CONFIG_VARIABLE, "").strip()
    if named:
        return Path(named)
    data_dir = Path(environ.get("TURBOHOOKS_DATA_DIR", "").strip() or _DEFAULT_DATA_DIR)
    candidate = data_dir / CONFIG_FILE
    return candidate if candidate.is_file() else None


class Config:
    """Every setting, parsed once: ask it for a role's object with :meth:`role`.

    ``values`` holds the variables that were set (name → parsed value);
    ``sources`` says where each came from (``environment`` or the file's path).
    """

    def __init__(
        self, values: dict[str, Any], sources: dict[str, str], environ: Mapping[str, str], path: Path | None
    ) -> None:
        self.values = values
        self.sources = sources
        self.path = path
        self._environ = dict(environ)

    def role(self, kind: type[R], **overrides: Any) -> R:
        """The settings object of ``kind``'s role; ``overrides`` (command-line options) win when not None."""
        fields: dict[str, Any] = kind.from_environment(self._environ)
        for name, value in self.values.items():
            row = SETTINGS_TABLE[name]
            for role, field in ((row.role, row.field), *row.also):
                if role == kind.ROLE:
                    fields[field] = value
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return kind.from_values(fields)


def load_config(environ: Mapping[str, str] | None = None, *, config_file: Path | None = None) -> Config:
    """Read the settings file and the environment (default ``os.environ``); :class:`ConfigError` names a bad one."""
    env = os.environ if environ is None else environ
    path = config_file or config_path(env)
    raw: dict[str, tuple[Variable, str]] = _read_file(path) if path is not None else {}
    sources = dict.fromkeys(raw, str(path))
    for name, row in SETTINGS_TABLE.items():
        text = env.get(name)
        if text is not None and text.strip():
            raw[name] = (row, text)
            sources[name] = "environment"
    values: dict[str, Any] = {}
    for name, (row, text) in raw.items():
        try:
            values[name] = row.parse(text)
        except ValueError as exc:
            where = "" if sources[name] == "environment" else f" (in {sources[name]})"
            raise ConfigError(name, f"{exc}{where}") from None
    return Config(values, sources, env, path)
