"""Publishing Turbo events to JetStream: :class:`EventPublisher`, and what derives events.

The publisher's ``emit_change`` derives the events a change implies; the
scheduler publishes time-based events; the milestone processor follows the
stream for ``milestone.completed`` (both in :mod:`publishers.processors`); the
simulator plays Turbo activity. The processors and the simulator are imported
on first use: an application that only publishes never loads them.
"""

from typing import TYPE_CHECKING

from streams import lazy_exports
from streams.settings import SCHEDULER_VARIABLES, SchedulerSettings

from ._changes import derive_events, mentions
from ._outbox import Outbox
from ._publisher import EventPublisher, PublishAck

if TYPE_CHECKING:
    from ._simulator import SimulationStats, Simulator
    from .processors import MILESTONES_BUCKET, SCHEDULER_BUCKET, MilestoneProcessor, Scheduler, SchedulerMetrics

__all__ = (
    "MILESTONES_BUCKET",
    "SCHEDULER_BUCKET",
    "SCHEDULER_VARIABLES",
    "EventPublisher",
    "MilestoneProcessor",
    "Outbox",
    "PublishAck",
    "Scheduler",
    "SchedulerMetrics",
    "SchedulerSettings",
    "SimulationStats",
    "Simulator",
    "derive_events",
    "mentions",
)

__getattr__ = lazy_exports(
    __name__,
    {
        "MILESTONES_BUCKET": ".processors",
        "MilestoneProcessor": ".processors",
        "SCHEDULER_BUCKET": ".processors",
        "Scheduler": ".processors",
        "SchedulerMetrics": ".processors",
        "SimulationStats": "._simulator",
        "Simulator": "._simulator",
    },
)
