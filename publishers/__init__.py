"""Publishing Turbo events to JetStream: :class:`EventPublisher`, and what derives events.

The publisher's ``emit_change`` derives the events a change implies; the
scheduler publishes time-based events; the milestone processor follows the
stream for ``milestone.completed``; the simulator plays Turbo activity.
"""

from ._changes import derive_events, mentions
from ._milestones import MILESTONES_BUCKET, MilestoneProcessor
from ._outbox import Outbox
from ._publisher import EventPublisher, PublishAck
from ._scheduler import SCHEDULER_BUCKET, SCHEDULER_VARIABLES, Scheduler, SchedulerSettings
from ._simulator import SimulationStats, Simulator

__all__ = (
    "MILESTONES_BUCKET",
    "SCHEDULER_BUCKET",
    "SCHEDULER_VARIABLES",
    "EventPublisher",
    "MilestoneProcessor",
    "Outbox",
    "PublishAck",
    "Scheduler",
    "SchedulerSettings",
    "SimulationStats",
    "Simulator",
    "derive_events",
    "mentions",
)
