"""NATS least privilege: one user per role, the subjects each may use, and the embedded server's generated users.

Every process of turbohooks connects as one *role*. The gateway is the admin
(it provisions streams, buckets and consumers, and runs the API's operations);
the others may do their job and nothing else:

``publisher``  publish events (``turbo.>``); no read of anything.
``worker``     pull and ack its subscriptions' consumers and the redelivery queue,
               publish attempts, dead letters and ``system.causation_loop_stopped``, read the subscriptions bucket
               (never write it), keep the GitHub integration's own bucket and the
               rate limits' (``turbohooks_throttle``).
``recorder``   pull and ack the attempts stream, write the subscriptions bucket
               (auto-disable), publish the ``system.health_check_failed`` event.
``scheduler``  follow the events stream, keep its two buckets, publish events.
``tail``       read the events stream (ordered consumers) and stream state.

One account with per-user permissions, not an operator/accounts (JWT) setup:
every role shares the same streams, so accounts would need an export/import
per stream and API subject to give back what one account has, and they need
``nsc`` and a resolver to run. Users with permissions work on the embedded
server and on any external nats-server alike (``auth.conf`` is the shipped
block, with the passwords as environment variables).

Replies: each role gets its own inbox prefix (``_INBOX_<role>``) and may
subscribe to it only, so no role can read the answers sent to another (the
gateway's reads of the subscriptions bucket, with every signing secret).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ._errors import ConfigError, TurbohooksError
from ._topology import LEGACY_RECORDER_CONSUMERS, RECORDER_CONSUMER
from .settings import Settings

__all__ = (
    "ADMIN_ROLE",
    "ROLES",
    "credentials_path",
    "ensure_credentials",
    "inbox_prefix",
    "load_credentials",
    "nats_auth_options",
    "render_authorization",
    "role_permissions",
    "user_name",
)

ROLES: Final = ("gateway", "worker", "recorder", "scheduler", "publisher", "tail")
"""The roles a turbohooks process connects as; ``gateway`` is the admin."""
ADMIN_ROLE: Final = "gateway"

_API: Final = "$JS.API"
# The internal streams and buckets (streams._topology and the bucket owners); kept
# here as names so that the permissions need no import of the layers above.
_ATTEMPTS: Final = "TURBOHOOKS_ATTEMPTS"
_DLQ: Final = "TURBOHOOKS_DLQ"
_REDELIVER: Final = "TURBOHOOKS_REDELIVER"
_RECORDER: Final = RECORDER_CONSUMER
SUBSCRIPTIONS_BUCKET: Final = "turbohooks_subscriptions"
_GITHUB_BUCKET: Final = "turbohooks_github"
_THROTTLE_BUCKET: Final = "turbohooks_throttle"
_SCHEDULER_BUCKETS: Final = ("turbohooks_scheduler", "turbohooks_milestones")
_HEARTBEATS: Final = "turbohooks_heartbeats"  # streams/_heartbeat.py: every long-running role reports there
_LEASES_BUCKET: Final = "turbohooks_leases"
"""Which worker delivers each entity-ordered subscription (consumers/engine/_lease.py)."""


def user_name(role: str) -> str:
    """The NATS user of ``role``: ``turbohooks-<role>``."""
    return f"turbohooks-{role}"


def inbox_prefix(role: str) -> str:
    """The reply-inbox prefix of ``role``'s connections (the only inboxes it may subscribe to)."""
    return f"_INBOX_{role}"


def _provision_reads(settings: Settings) -> list[str]:
    # provision() on every start: stream and recorder-consumer info, read only.
    streams = (settings.stream_name, _ATTEMPTS, _DLQ, _REDELIVER)
    consumers = (_RECORDER, *LEGACY_RECORDER_CONSUMERS)  # a legacy one is looked at (replaced by the admin)
    return [f"{_API}.STREAM.INFO.{s}" for s in streams] + [f"{_API}.CONSUMER.INFO.{_ATTEMPTS}.{c}" for c in consumers]


def _bucket_read(bucket: str) -> list[str]:
    stream = f"KV_{bucket}"
    return [
        f"{_API}.STREAM.INFO.{stream}",
        f"{_API}.DIRECT.GET.{stream}",
        f"{_API}.DIRECT.GET.{stream}.>",
        f"{_API}.STREAM.MSG.GET.{stream}",
        # watch() and keys(): an ordered (ephemeral) consumer and its flow control; nats-py
        # never deletes it (the server drops it when idle), so no role gets CONSUMER.DELETE.
        f"{_API}.CONSUMER.CREATE.{stream}",
        f"{_API}.CONSUMER.CREATE.{stream}.>",
        f"{_API}.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def _bucket_write(bucket: str, *, create: bool = False) -> list[str]:
    granted = [f"$KV.{bucket}.>"]
    if create:
        granted.append(f"{_API}.STREAM.CREATE.KV_{bucket}")
    return granted


def _pull(stream: str, consumer: str) -> list[str]:
    """Create (or update) durable ``consumer`` on ``stream``, pull from it and ack its messages."""
    return [
        f"{_API}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{_API}.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{_API}.CONSUMER.INFO.{stream}.{consumer}",
        f"{_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]


def role_permissions(role: str, settings: Settings) -> tuple[list[str], list[str]]:
    """``(publish, subscribe)``: the subjects ``role`` may publish to and subscribe to."""
    events = settings.stream_name
    inbox = [f"{inbox_prefix(role)}.>"]
    if role == ADMIN_ROLE:
        return [">"], [">"]
    if role == "publisher":
        return ["turbo.>", *_provision_reads(settings)], inbox
    if role == "worker":
        return [
            *_provision_reads(settings),
            # One durable consumer per subscription (<integration>_<id>), one redelivery queue per kind.
            *_pull(events, "*"),
            *_pull(_REDELIVER, "*"),
            "turbohooks.attempts.>",
            "turbohooks.dlq.>",
            # Loop prevention announces a stopped chain (consumers/engine/_deliverer.py).
            "turbo.system.causation_loop_stopped",
            *_bucket_read(SUBSCRIPTIONS_BUCKET),
            *_bucket_read(_GITHUB_BUCKET),
            *_bucket_write(_GITHUB_BUCKET, create=True),
            *_bucket_read(_HEARTBEATS),
            *_bucket_write(_HEARTBEATS, create=True),
            # Rate-limit slots and receivers' pauses, shared by the worker copies (consumers/engine/_throttle.py).
            *_bucket_read(_THROTTLE_BUCKET),
            *_bucket_write(_THROTTLE_BUCKET, create=True),
            *_bucket_read(_LEASES_BUCKET),
            *_bucket_write(_LEASES_BUCKET, create=True),
        ], inbox
    if role == "recorder":
        return [
            *_provision_reads(settings),
            *_pull(_ATTEMPTS, _RECORDER),
            *_bucket_read(SUBSCRIPTIONS_BUCKET),
            *_bucket_write(SUBSCRIPTIONS_BUCKET),
            *_bucket_read(_HEARTBEATS),
            *_bucket_write(_HEARTBEATS, create=True),
            "turbo.system.>",
        ], inbox
    if role == "scheduler":
        granted = [*_provision_reads(settings), "turbo.>"]
        # The stream follower: ephemeral pull consumers over the events stream, and direct reads.
        granted += [
            f"{_API}.CONSUMER.CREATE.{events}",
            f"{_API}.CONSUMER.CREATE.{events}.>",
            f"{_API}.CONSUMER.INFO.{events}.*",
            f"{_API}.CONSUMER.MSG.NEXT.{events}.*",
            f"{_API}.DIRECT.GET.{events}",
            f"{_API}.DIRECT.GET.{events}.>",
            f"{_API}.STREAM.MSG.GET.{events}",
        ]
        for bucket in (*_SCHEDULER_BUCKETS, _HEARTBEATS):
            granted += [*_bucket_read(bucket), *_bucket_write(bucket, create=True)]
        return granted, inbox
    if role == "tail":
        return [
            *_provision_reads(settings),
            f"{_API}.CONSUMER.LIST.*",
            f"{_API}.CONSUMER.NAMES.*",
            # Ordered consumers only: the subject without a name refuses a durable one.
            f"{_API}.CONSUMER.CREATE.{events}",
            f"$JS.FC.{events}.>",
        ], inbox
    raise ValueError(f"turbohooks: unknown NATS role {role!r}; one of {', '.join(ROLES)}")


def _quoted(items: list[str]) -> str:
    return ", ".join(json.dumps(item) for item in items)


def render_authorization(settings: Settings, passwords: Mapping[str, str] | None = None) -> str:
    """The ``authorization`` block of nats-server's configuration: one user per role, with its permissions.

    ``passwords`` maps role → password (the embedded server's generated ones);
    without it each password is the variable ``$TURBOHOOKS_NATS_<ROLE>_PASSWORD``,
    which nats-server resolves from its environment (the shipped ``auth.conf``).
    """
    lines = [
        "# One NATS user per turbohooks role (streams/_auth.py renders this block; docs/security.md explains it).",
        "authorization {",
        "  users = [",
    ]
    for role in ROLES:
        publish, subscribe = role_permissions(role, settings)
        password = json.dumps(passwords[role]) if passwords is not None else f"$TURBOHOOKS_NATS_{role.upper()}_PASSWORD"
        lines += [
            "    {",
            f"      user: {json.dumps(user_name(role))}",
            f"      password: {password}",
            "      permissions: {",
            f"        publish: {{ allow: [{_quoted(publish)}] }}",
            f"        subscribe: {{ allow: [{_quoted(subscribe)}] }}",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def credentials_path(settings: Settings) -> Path:
    """``<data dir>/nats/credentials.json``: the embedded server's generated passwords, one per role (mode 0600)."""
    return settings.data_dir / "nats" / "credentials.json"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_credentials(settings: Settings) -> dict[str, str] | None:
    """The generated role → password map, or ``None`` when there is none (no embedded server with auth yet)."""
    path = credentials_path(settings)
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise TurbohooksError(f"turbohooks: cannot read the NATS credentials {path}: {exc}") from exc
    if not isinstance(raw, dict) or not all(isinstance(raw.get(role), str) for role in ROLES):
        raise TurbohooksError(f"turbohooks: {path} is not a turbohooks NATS credentials file; delete it to regenerate")
    return {role: raw[role] for role in ROLES}


def ensure_credentials(settings: Settings) -> dict[str, str]:
    """The generated passwords, created on first start (``secrets.token_urlsafe``, file mode 0600)."""
    existing = load_credentials(settings)
    if existing is not None:
        return existing
    generated = {role: secrets.token_urlsafe(32) for role in ROLES}
    _write_private(credentials_path(settings), json.dumps(generated, indent=2) + "\n")
    return generated


def _existing_file(path: Path, variable: str) -> str:
    if not path.is_file():
        raise ConfigError(variable, f"{path}: no such file")
    return str(path)


def nats_auth_options(settings: Settings, role: str) -> dict[str, Any]:
    """nats-py ``connect()`` options authenticating ``role``, and its inbox prefix.

    Explicit settings win, in this order: ``NATS_CREDS`` (a JWT ``.creds`` file),
    ``NATS_NKEY_SEED`` (an nkey seed file), ``NATS_USER``/``NATS_PASSWORD``.
    Without any, a process using the embedded server (``NATS_URL`` unset) signs
    in as ``turbohooks-<role>`` with the password generated in the data dir, if
    that file exists; otherwise it connects without credentials.
    """
    if role not in ROLES:
        raise ValueError(f"turbohooks: unknown NATS role {role!r}; one of {', '.join(ROLES)}")
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix(role)}
    if settings.nats_creds is not None or settings.nats_nkey_seed is not None:
        try:
            import nkeys  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
        except ImportError:
            variable = "NATS_CREDS" if settings.nats_creds is not None else "NATS_NKEY_SEED"
            raise ConfigError(variable, "needs the nkeys package: pip install 'nats-py[nkeys]'") from None
        if settings.nats_creds is not None:
            options["user_credentials"] = _existing_file(settings.nats_creds, "NATS_CREDS")
        else:
            assert settings.nats_nkey_seed is not None
            options["nkeys_seed"] = _existing_file(settings.nats_nkey_seed, "NATS_NKEY_SEED")
        return options
    if settings.nats_user is not None:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password or ""
        return options
    if settings.nats_url is None:
        generated = load_credentials(settings)
        if generated is not None:
            options["user"] = user_name(role)
            options["password"] = generated[role]
    return options
