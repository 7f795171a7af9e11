"""The event contract and the JetStream topology of turbohooks.

Everything the other parts agree on lives here: the envelope, the catalog of
event types, subjects and subscription patterns, settings, errors, the streams,
and the embedded nats-server.
"""

from ._auth import ADMIN_ROLE as NATS_ADMIN_ROLE
from ._auth import ROLES as NATS_ROLES
from ._catalog import (
    ENTITY_TYPES,
    EVENT_CATALOG,
    EXTERNAL_EVENT_TYPES,
    EXTERNAL_SOURCES,
    KNOWN_EVENT_TYPES,
    TURBO_SOURCE,
    EventTypeInfo,
    event_type_info,
)
from ._cluster import CLUSTER_CONFIG_DIR, NatsCluster
from ._connection import connect_nats
from ._envelope import (
    SCHEMA_VERSION,
    Actor,
    ActorType,
    Event,
    EventContext,
    EventData,
    build_event,
    decode_event,
    encode_event,
    json_object,
)
from ._errors import (
    NATS_ERRORS,
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    EmbeddedServerError,
    EventValidationError,
    NatsUnavailableError,
    NotFoundError,
    PortInUseError,
    PublishError,
    TurbohooksError,
)
from ._heartbeat import HEARTBEATS_BUCKET, heartbeat, silent_processes
from ._kv import open_bucket
from ._lazy import lazy_exports
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import MetricsServer, ProcessMetrics, exposition
from ._server import DEFAULT_CONFIG, DataDirLock, DataDirTakenError, EmbeddedNats, find_nats_server
from ._server_config import embedded_config
from ._subjects import (
    SUBJECT_ROOT,
    event_subject,
    event_type_of_subject,
    filter_subjects,
    match_event_types,
    normalize_patterns,
)
from ._topology import (
    ATTEMPTS_STREAM,
    ATTEMPTS_SUBJECT_ROOT,
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_ROOT,
    LEGACY_RECORDER_CONSUMERS,
    RECORDER_CONSUMER,
    RECORDER_FETCH,
    REDELIVER_STREAM,
    REDELIVER_SUBJECT_ROOT,
    ensure_recorder_consumer,
    ensure_stream,
    events_stream_config,
    internal_stream_configs,
    provision,
    recorder_consumer_config,
)
from ._version import USER_AGENT, VERSION
from .settings import SETTINGS_VARIABLES, Settings, parse_duration, parse_size

__all__ = (
    "ATTEMPTS_STREAM",
    "ATTEMPTS_SUBJECT_ROOT",
    "CLUSTER_CONFIG_DIR",
    "DEAD_LETTER_STREAM",
    "DEAD_LETTER_SUBJECT_ROOT",
    "DEFAULT_CONFIG",
    "ENTITY_TYPES",
    "EVENT_CATALOG",
    "EXTERNAL_EVENT_TYPES",
    "EXTERNAL_SOURCES",
    "HEARTBEATS_BUCKET",
    "KNOWN_EVENT_TYPES",
    "LEGACY_RECORDER_CONSUMERS",
    "METRICS_CONTENT_TYPE",
    "NATS_ADMIN_ROLE",
    "NATS_ERRORS",
    "NATS_ROLES",
    "RECORDER_CONSUMER",
    "RECORDER_FETCH",
    "REDELIVER_STREAM",
    "REDELIVER_SUBJECT_ROOT",
    "SCHEMA_VERSION",
    "SETTINGS_VARIABLES",
    "SUBJECT_ROOT",
    "TURBO_SOURCE",
    "USER_AGENT",
    "VERSION",
    "Actor",
    "ActorType",
    "ConfigError",
    "ConflictError",
    "DataDirLock",
    "DataDirTakenError",
    "DatabaseUnavailableError",
    "EmbeddedNats",
    "EmbeddedServerError",
    "Event",
    "EventContext",
    "EventData",
    "EventTypeInfo",
    "EventValidationError",
    "MetricsServer",
    "NatsCluster",
    "NatsUnavailableError",
    "NotFoundError",
    "PortInUseError",
    "ProcessMetrics",
    "PublishError",
    "Settings",
    "TurbohooksError",
    "build_event",
    "connect_nats",
    "decode_event",
    "embedded_config",
    "encode_event",
    "ensure_recorder_consumer",
    "ensure_stream",
    "event_subject",
    "event_type_info",
    "event_type_of_subject",
    "events_stream_config",
    "exposition",
    "filter_subjects",
    "find_nats_server",
    "heartbeat",
    "internal_stream_configs",
    "json_object",
    "lazy_exports",
    "match_event_types",
    "normalize_patterns",
    "open_bucket",
    "parse_duration",
    "parse_size",
    "provision",
    "recorder_consumer_config",
    "silent_processes",
)
