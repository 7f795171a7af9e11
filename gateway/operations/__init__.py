"""What the admin API and the CLI both do: retry, recover, replay, test-send, dead letters.

Each operation is one module and takes an open :class:`~consumers.Engine`;
the API's handlers and the CLI's commands only translate their inputs and
print or serialize the result. None of them delivers: retry, recover and
replay queue requests for the workers (each operation is recorded in the audit log, ``_audit``) (refused, by one rule,
:func:`require_active`, unless the subscription is active); test-send is the
one exception, a synthetic event sent now and recorded nowhere. Preview runs a draft's
rules on stored events and sends nothing.

Failures are the :class:`~streams.TurbohooksError` tree: ``NotFoundError``,
``ConflictError``, ``EventValidationError`` (naming the field), and the
``NatsUnavailableError``/``DatabaseUnavailableError`` of the layers below.
"""

from __future__ import annotations

from ._alerts import ALERTS_BUCKET, Alert, AlertEvaluator, AlertKind, alert_conditions
from ._audit import acting_as, record_audit, token_actor
from ._dead_letters import (
    MAX_DEAD_LETTER_SCAN,
    AttemptSummary,
    DeadLetterItem,
    DeadLetterKind,
    DeadLetterList,
    get_dead_letter,
    list_dead_letters,
)
from ._health import HEALTH_WINDOWS, SubscriptionHealth, read_health, subscription_health, trouble
from ._preview import (
    DEFAULT_PREVIEW_EVENTS,
    MAX_PREVIEW_EVENTS,
    PreviewItem,
    PreviewResult,
    SubscriptionDraft,
    preview,
)
from ._queue import event_envelope, queue_redelivery, require_active
from ._recover import MAX_RECOVER, RecoverResult, recover_failed
from ._redrive import (
    MAX_REDRIVE,
    DeadLetterRedriven,
    RedriveRefusal,
    SubscriptionRedrive,
    redrive_dead_letter,
    redrive_subscription_dead_letters,
)
from ._replay import MAX_REPLAY_EVENTS, ReplayItem, ReplayRange, ReplayResult, replay_subscription
from ._resolve import SHORT_ID, resolve_delivery, resolve_subscription, short_id
from ._retry import retry_delivery
from ._stream import ALL_SUBJECTS, StreamBounds, count_matching, read_backward, read_forward, seq_at_time, stream_bounds
from ._test_send import DeliveryTestResult, send_test_event
from ._when import parse_when

__all__ = (
    "ALERTS_BUCKET",
    "ALL_SUBJECTS",
    "DEFAULT_PREVIEW_EVENTS",
    "HEALTH_WINDOWS",
    "MAX_DEAD_LETTER_SCAN",
    "MAX_PREVIEW_EVENTS",
    "MAX_RECOVER",
    "MAX_REDRIVE",
    "MAX_REPLAY_EVENTS",
    "SHORT_ID",
    "Alert",
    "AlertEvaluator",
    "AlertKind",
    "AttemptSummary",
    "DeadLetterItem",
    "DeadLetterKind",
    "DeadLetterList",
    "DeadLetterRedriven",
    "DeliveryTestResult",
    "PreviewItem",
    "PreviewResult",
    "RecoverResult",
    "RedriveRefusal",
    "ReplayItem",
    "ReplayRange",
    "ReplayResult",
    "StreamBounds",
    "SubscriptionDraft",
    "SubscriptionHealth",
    "SubscriptionRedrive",
    "acting_as",
    "alert_conditions",
    "count_matching",
    "event_envelope",
    "get_dead_letter",
    "list_dead_letters",
    "parse_when",
    "preview",
    "queue_redelivery",
    "read_backward",
    "read_forward",
    "read_health",
    "record_audit",
    "recover_failed",
    "redrive_dead_letter",
    "redrive_subscription_dead_letters",
    "replay_subscription",
    "require_active",
    "resolve_delivery",
    "resolve_subscription",
    "retry_delivery",
    "send_test_event",
    "seq_at_time",
    "short_id",
    "stream_bounds",
    "subscription_health",
    "token_actor",
    "trouble",
)
