"""Kept for ``from publishers._scheduler import label`` (the CLI); the scheduler is in :mod:`publishers.processors`."""

from streams.settings import SCHEDULER_VARIABLES, SchedulerSettings

from .processors import SCHEDULER_BUCKET, ScheduledItem, Scheduler, due_now, label, learn, parse_when

__all__ = (
    "SCHEDULER_BUCKET",
    "SCHEDULER_VARIABLES",
    "ScheduledItem",
    "Scheduler",
    "SchedulerSettings",
    "due_now",
    "label",
    "learn",
    "parse_when",
)
