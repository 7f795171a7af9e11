"""Publishing Turbo events to JetStream: :class:`EventPublisher`."""

from ._outbox import Outbox
from ._publisher import EventPublisher, PublishAck

__all__ = ("EventPublisher", "Outbox", "PublishAck")
