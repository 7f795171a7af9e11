"""The stream processors: they follow the events stream and publish what it implies.

:class:`Scheduler` publishes the time-based events (due dates, overdue, starting
soon, the daily digest and weekly report); :class:`MilestoneProcessor` publishes
``milestone.completed``. Both are :class:`FollowingProcessor` s (one lifecycle, one
run loop) built on :class:`StreamFollower` and :class:`RecordStore`; the
scheduler's rules are the pure model of ``_due`` and the reports of ``_reports``.
"""

from ._base import FollowingProcessor
from ._due import Due, ScheduledItem, due_event, due_now, label, learn, parse_when
from ._follow import RecordStore, StreamFollower, decode_messages, kv_key
from ._metrics import SchedulerMetrics
from ._milestones import MILESTONES_BUCKET, MilestoneProcessor, completion_event_id
from ._reports import Tally, last_daily, last_weekly, summarize
from ._scheduler import SCHEDULER_BUCKET, Scheduler

__all__ = (
    "MILESTONES_BUCKET",
    "SCHEDULER_BUCKET",
    "Due",
    "FollowingProcessor",
    "MilestoneProcessor",
    "RecordStore",
    "ScheduledItem",
    "Scheduler",
    "SchedulerMetrics",
    "StreamFollower",
    "Tally",
    "completion_event_id",
    "decode_messages",
    "due_event",
    "due_now",
    "kv_key",
    "label",
    "last_daily",
    "last_weekly",
    "learn",
    "parse_when",
    "summarize",
)
