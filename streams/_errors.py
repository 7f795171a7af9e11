"""The exception tree of turbohooks.

Every error the product raises on purpose derives from :class:`TurbohooksError`,
and its message says what is wrong and what the user can do about it::

    TurbohooksError
    ├── ConfigError            a setting (environment variable) has a bad value
    ├── EventValidationError   an event was refused before publishing (also ValueError)
    ├── NatsUnavailableError   NATS cannot be reached or answered in time
    ├── DatabaseUnavailableError  the SQL database cannot be reached, is locked, or refused a statement
    ├── EmbeddedServerError    the embedded nats-server could not start
    │   └── PortInUseError     its port is taken by another process
    ├── PublishError           JetStream did not acknowledge a publish
    ├── NotFoundError          a named thing (subscription, delivery, event) does not exist (also KeyError)
    └── ConflictError          the request contradicts the current state
"""

from __future__ import annotations

from typing import Final

from nats.errors import Error as _NatsError

__all__ = (
    "NATS_ERRORS",
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailableError",
    "EmbeddedServerError",
    "EventValidationError",
    "NatsUnavailableError",
    "NotFoundError",
    "PortInUseError",
    "PublishError",
    "TurbohooksError",
)


class TurbohooksError(Exception):
    """Base class of every error turbohooks raises on purpose."""


class ConfigError(TurbohooksError):
    """A setting has a value that cannot be used; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"turbohooks: setting {variable}: {problem}")


class EventValidationError(TurbohooksError, ValueError):
    """An input was refused; ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NatsUnavailableError(TurbohooksError):
    """NATS could not be reached, or did not answer in time."""


class DatabaseUnavailableError(TurbohooksError):
    """The SQL database could not be reached, stayed locked past its timeout, or failed a statement.

    Raised by the delivery log's boundary (``consumers``) in place of the driver's errors, so the CLI
    prints one line and the API answers 503 for the same failure.
    """


class EmbeddedServerError(TurbohooksError):
    """The embedded nats-server failed to start or stop."""


class PortInUseError(EmbeddedServerError):
    """The port the embedded nats-server should listen on is taken."""


class PublishError(TurbohooksError):
    """JetStream did not acknowledge a publish."""


class NotFoundError(TurbohooksError, KeyError):
    """A subscription, delivery or event with that id does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConflictError(TurbohooksError):
    """The request contradicts the current state (for instance, a duplicate name)."""


NATS_ERRORS: Final = (_NatsError, TimeoutError, OSError)
"""The exceptions that mean "NATS is unreachable or did not answer in time" (reconnecting, timed out, socket closed).

A loop that talks to NATS catches exactly these, waits and tries again; anything else is a bug or a bad message.
"""
