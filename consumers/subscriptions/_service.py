"""Subscription management: the one door through which the CLI and the gateway change subscriptions.

Every change is validated, written to SQL, applied to the subscription's
JetStream consumer, and mirrored to the workers through the KV registry.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from nats.js import JetStreamContext

from integrations import destinations, get_integration, requires_url
from integrations.core import (
    ClientTls,
    generate_secret,
    generate_signing_key,
    validate_destination,
)
from publishers import EventPublisher
from streams import Settings, normalize_patterns

from .._messages import Subscription
from ..log import AuditStore, SubscriptionStore
from ..rules import check_filter, check_rules_on_save
from ._consumer import delete_consumer, ensure_consumer
from ._registry import SubscriptionRegistry
from ._safety import (
    check_tls,
    described,
    patched_tls,
    update_action,
)
from ._shapes import (
    UNSET,
    SubscriptionCreate,
    SubscriptionPatch,
    check_headers,
    check_in_flight,
    check_name,
    check_ordering,
    check_rate_limit,
    check_redact_fields,
    check_schedule,
    check_strict_in_flight,
    kept_values,
)

__all__ = ("SubscriptionService",)

_log = logging.getLogger("turbohooks.subscriptions")

_RULE_FIELDS = frozenset(
    {"template", "template_content_type", "event_types", "integration_config", "filters", "redact_fields"}
)
"""Changes after which a template is checked again against stored events."""


class SubscriptionService:
    """Create, change, pause, resume, disable, rotate and delete subscriptions."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionStore,
        registry: SubscriptionRegistry,
        js: JetStreamContext,
        publisher: EventPublisher | None = None,
        *,
        audit: AuditStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.js = js
        self.publisher = publisher
        self.audit = audit
        """Where admin actions are recorded (who: :func:`~consumers.log.acting_as`); ``None`` records nothing."""

    async def _audit(self, action: str, sub: Subscription, details: Mapping[str, Any] | None = None) -> None:
        if self.audit is not None:
            await self.audit.record(action, f"subscription:{sub.id}", {"name": sub.name, **(details or {})})

    async def _check_url(self, url: str, field: str = "url") -> str:
        return await validate_destination(
            url,
            allow_http=self.settings.webhook_allow_http,
            allowed_hosts=self.settings.webhook_allowed_hosts,
            field=field,
        )

    async def _check_destinations(self, integration: Any, config: Mapping[str, Any]) -> None:
        """The integration's other URLs (GitHub's ``api_url``) pass the destination rules too."""
        for field, url in destinations(integration, config).items():
            await self._check_url(url, field)

    async def create(self, new: SubscriptionCreate) -> Subscription:
        """Validate and create; the returned subscription carries its secret (shown once)."""
        name = check_name(new.name)
        integration = get_integration(new.integration)
        # E-mail (mailto:) and GitHub (api_url in the config) do not POST to
        # the URL; their validate_config checks it instead.
        url = await self._check_url(new.url) if requires_url(integration) else new.url.strip()
        config = integration.validate_config(new.integration_config, url)
        await self._check_destinations(integration, config)
        tls = ClientTls(client_cert=new.tls_client_cert, client_key=new.tls_client_key, ca_bundle=new.tls_ca_bundle)
        check_tls(tls, url)
        ordering, ordering_key = check_ordering(new.ordering, new.ordering_key)
        check_strict_in_flight(ordering, new.max_in_flight)
        now = datetime.now(UTC)
        subscription = Subscription(
            id=uuid.uuid4(),
            name=name,
            url=url,
            event_types=normalize_patterns(new.event_types),
            integration=integration.name,
            integration_config=config,
            headers=check_headers(new.headers),
            status="active" if new.active else "paused",
            secret=generate_secret(),
            filters=check_filter(new.filters),
            retry_schedule=check_schedule(new.retry_schedule),
            max_in_flight=check_in_flight(new.max_in_flight),
            created_at=now,
            updated_at=now,
            signature_scheme=new.signature,
            signing_key=generate_signing_key() if new.signature != "v1" else None,
            tls_client_cert=tls.client_cert,
            tls_client_key=tls.client_key,
            tls_ca_bundle=tls.ca_bundle,
            template=new.template,
            template_content_type=new.template_content_type,
            rate_limit=check_rate_limit(new.rate_limit),
            ordering=ordering,
            ordering_key=ordering_key,
            redact_fields=check_redact_fields(new.redact_fields),
            auto_recover=new.auto_recover,
        )
        await check_rules_on_save(subscription, self.js, self.settings)
        created = await self.store.create(subscription)
        try:
            await ensure_consumer(self.js, self.settings, created)
        except BaseException:
            await self.store.delete(created.id)
            raise
        await self.registry.put(created)
        await self._audit("create", created, described(created))
        return created

    async def get(self, subscription_id: uuid.UUID) -> Subscription:
        """One subscription (``NotFoundError`` if missing)."""
        return await self.store.get(subscription_id)

    async def update(self, subscription_id: uuid.UUID, patch: SubscriptionPatch) -> Subscription:
        """Apply a partial update; nothing changes if any field is refused."""
        current = await self.store.get(subscription_id)
        changes: dict[str, Any] = {}
        if patch.name is not UNSET:
            changes["name"] = check_name(patch.name)
        if patch.url is not UNSET:
            integration = get_integration(current.integration)
            changes["url"] = await self._check_url(patch.url) if requires_url(integration) else patch.url.strip()
            if patch.integration_config is UNSET:
                integration.validate_config(current.integration_config, changes["url"])
        if patch.event_types is not UNSET:
            changes["event_types"] = normalize_patterns(patch.event_types)
        if patch.integration_config is not UNSET:
            integration = get_integration(current.integration)
            changes["integration_config"] = integration.validate_config(
                kept_values(patch.integration_config, current.integration_config), changes.get("url", current.url)
            )
            await self._check_destinations(integration, changes["integration_config"])
        if patch.headers is not UNSET:
            changes["headers"] = check_headers(kept_values(patch.headers, current.headers))
        if patch.retry_schedule is not UNSET:
            changes["retry_schedule"] = check_schedule(patch.retry_schedule)
        if patch.max_in_flight is not UNSET:
            changes["max_in_flight"] = check_in_flight(patch.max_in_flight)
        if patch.filters is not UNSET:
            changes["filters"] = check_filter(patch.filters)
        if patch.signature is not UNSET:
            changes["signature_scheme"] = patch.signature
            if patch.signature != "v1" and not current.signing_key:
                changes["signing_key"] = generate_signing_key()
        changes.update(patched_tls(current, patch, changes.get("url")))
        if patch.template is not UNSET:
            changes["template"] = patch.template
            if patch.template is None and patch.template_content_type is UNSET:
                changes["template_content_type"] = None  # removing the template removes its content type
        if patch.template_content_type is not UNSET:
            changes["template_content_type"] = patch.template_content_type
        if patch.rate_limit is not UNSET:
            changes["rate_limit"] = check_rate_limit(patch.rate_limit)
        if patch.ordering is not UNSET or patch.ordering_key is not UNSET:
            ordering = current.ordering if patch.ordering is UNSET else patch.ordering
            key = None if ordering != "entity" else current.ordering_key
            changes["ordering"], changes["ordering_key"] = check_ordering(
                ordering, key if patch.ordering_key is UNSET else patch.ordering_key
            )
        if changes.keys() & {"ordering", "max_in_flight"}:
            check_strict_in_flight(
                changes.get("ordering", current.ordering), changes.get("max_in_flight", current.max_in_flight)
            )
        if patch.redact_fields is not UNSET:
            changes["redact_fields"] = check_redact_fields(patch.redact_fields)
        if patch.auto_recover is not UNSET:
            changes["auto_recover"] = patch.auto_recover
        if patch.active is not UNSET:
            if patch.active:
                changes.update(
                    status="active",
                    disabled_reason=None,
                    consecutive_failures=0,
                    first_failure_at=None,
                    probe_attempts=0,
                    next_probe_at=None,
                )
            elif current.status == "active":
                changes["status"] = "paused"
        saved = await self._save(current, changes)
        if changes:
            # Field names, never values: headers and configs may hold credentials.
            await self._audit(update_action(changes), saved, {"fields": sorted(changes)})
        return saved

    async def _save(self, current: Subscription, changes: Mapping[str, Any]) -> Subscription:
        if not changes:
            return current
        updated = msgspec.structs.replace(current, **changes, updated_at=datetime.now(UTC))
        if _RULE_FIELDS.intersection(changes):  # not on pause, resume, disable: those never refuse
            await check_rules_on_save(updated, self.js, self.settings)
        saved = await self.store.update(updated)
        if changes.keys() & {"event_types", "ordering", "max_in_flight"}:  # the consumer's filter, its max_ack_pending
            await ensure_consumer(self.js, self.settings, saved)
        await self.registry.put(saved)
        if saved.status != current.status:
            # A disable is a failure an operator must see; a pause or a resume is someone's choice.
            _log.log(
                logging.WARNING if saved.status == "disabled" else logging.INFO,
                "subscription %s: %s → %s",
                saved.id,
                current.status,
                saved.status,
                extra={
                    "subscription_id": saved.id,
                    "status": saved.status,
                    "previous_status": current.status,
                    "error": saved.disabled_reason,
                },
            )
        return saved

    async def pause(self, subscription_id: uuid.UUID) -> Subscription:
        """Stop delivering; events keep accumulating in the subscription's backlog."""
        return await self.update(subscription_id, SubscriptionPatch(active=False))

    async def resume(self, subscription_id: uuid.UUID) -> Subscription:
        """Deliver again, starting with the backlog, in stream order."""
        return await self.update(subscription_id, SubscriptionPatch(active=True))

    async def disable(self, subscription_id: uuid.UUID, reason: str) -> Subscription | None:
        """Disable for a failure (auto-disable, 410 Gone), announce it as ``system.health_check_failed``.

        Returns ``None`` when it was already disabled or is gone.
        """
        try:
            current = await self.store.get(subscription_id)
        except KeyError:
            return None
        if current.status == "disabled":
            return None
        # The probe state starts over: the prober (auto-recover) schedules the first probe.
        saved = await self._save(
            current, {"status": "disabled", "disabled_reason": reason, "probe_attempts": 0, "next_probe_at": None}
        )
        if self.publisher is not None:
            await self.publisher.emit(
                event_type="system.health_check_failed",
                entity_id=str(saved.id),
                data={
                    "current": {
                        "check": "webhook_subscription",
                        "subscription_id": str(saved.id),
                        "subscription_name": saved.name,
                        "url": saved.url,
                        "status": "disabled",
                        "reason": reason,
                        "consecutive_failures": saved.consecutive_failures,
                    }
                },
                actor={"type": "system", "name": "turbohooks-recorder"},
                # One announcement per disable, even if the recorder retries.
                event_id=uuid.uuid5(saved.id, f"disabled:{saved.updated_at.isoformat()}"),
            )
        return saved

    async def schedule_probe(self, sub: Subscription, at: datetime, *, failed: Mapping[str, Any] | None = None) -> None:
        """Set when the disabled ``sub`` is probed next; ``failed``: the probe just made got no 2xx (announced).

        Idempotent: two probers that made the same probe save the same state and
        announce it under the same event id (stored once).
        """
        current = await self.store.get(sub.id)
        if current.status != "disabled" or not current.auto_recover:
            return  # resumed, paused or opted out meanwhile
        if (current.probe_attempts, current.next_probe_at) != (sub.probe_attempts, sub.next_probe_at):
            return  # another prober moved the state on since ``sub`` was read: its word stands
        attempts = sub.probe_attempts + (1 if failed is not None else 0)
        saved = await self._save(current, {"probe_attempts": attempts, "next_probe_at": at})
        if failed is not None and self.publisher is not None:
            await self.publisher.emit(
                event_type="system.subscription_probe_failed",
                entity_id=str(saved.id),
                data={"current": {**_about(saved), "status": "disabled", "next_probe_at": at.isoformat(), **failed}},
                actor={"type": "system", "name": "turbohooks-prober"},
                event_id=uuid.uuid5(saved.id, f"probe-failed:{attempts}:{sub.next_probe_at}"),
            )

    async def recover(self, sub: Subscription, probe: Mapping[str, Any]) -> Subscription | None:
        """Re-enable the disabled ``sub`` after a 2xx probe; announce ``system.subscription_recovered``.

        ``None`` when it is not disabled any more (another prober, or a person, was first).
        Active again, its consumer delivers the backlog it kept, in stream order.
        """
        current = await self.store.get(sub.id)
        if current.status != "disabled" or not current.auto_recover:
            return None
        saved = await self._save(
            current,
            {
                "status": "active",
                "disabled_reason": None,
                "consecutive_failures": 0,
                "first_failure_at": None,
                "probe_attempts": 0,
                "next_probe_at": None,
            },
        )
        if self.publisher is not None:
            await self.publisher.emit(
                event_type="system.subscription_recovered",
                entity_id=str(saved.id),
                data={
                    "current": {
                        **_about(saved),
                        "status": "active",
                        "disabled_reason": current.disabled_reason,
                        **probe,
                    }
                },
                actor={"type": "system", "name": "turbohooks-prober"},
                # One announcement per recovery, whichever prober saw the 2xx first.
                event_id=uuid.uuid5(saved.id, f"recovered:{current.next_probe_at}:{current.probe_attempts}"),
            )
        return saved

    async def rotate_secret(self, subscription_id: uuid.UUID) -> Subscription:
        """A new secret (and ed25519 key pair); the old ones keep signing beside them for ``WEBHOOK_SECRET_GRACE``."""
        current = await self.store.get(subscription_id)
        changes: dict[str, Any] = {
            "secret": generate_secret(),
            "previous_secret": current.secret,
            "previous_secret_expires_at": datetime.now(UTC) + timedelta(seconds=self.settings.webhook_secret_grace),
        }
        if current.signing_key:
            changes.update(signing_key=generate_signing_key(), previous_signing_key=current.signing_key)
        saved = await self._save(current, changes)
        await self._audit("rotate", saved, {"grace_seconds": self.settings.webhook_secret_grace})
        return saved

    async def delete(self, subscription_id: uuid.UUID) -> None:
        """Delete the subscription, its consumer (and backlog) and its delivery log."""
        current = await self.store.get(subscription_id)
        await self.store.delete(subscription_id)
        await self.registry.delete(subscription_id)
        await delete_consumer(self.js, self.settings, current)
        await self._audit("delete", current)

    async def mirror(self) -> None:
        """Re-sync the KV registry and the consumers with SQL (on start); secrets in clear get encrypted."""
        await self.store.reseal()
        subscriptions = await self.store.all_for_mirror()
        for subscription in subscriptions:
            await ensure_consumer(self.js, self.settings, subscription)
        await self.registry.sync(subscriptions)


def _about(sub: Subscription) -> dict[str, Any]:
    """What every announcement about a subscription names."""
    return {"subscription_id": str(sub.id), "subscription_name": sub.name, "url": sub.url}
