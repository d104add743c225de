"""Campaign and delivery operations shared by the admin, pages, API and tasks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Delivery, DeliveryEvent
from providers.base import StatusEvent
from providers.status import DeliveryStatus, can_move, is_final

STATUS_FIELDS = [
    "status",
    "price",
    "currency",
    "parts",
    "error_message",
    "delivered_at",
    "read_at",
    "final_at",
    "updated_at",
]


def _event_key(source: str, event: StatusEvent) -> str:
    # The same gateway report received twice (a retried callback, an overlapping
    # poll) must not make a second event row.
    basis = "|".join(
        [
            source,
            event.provider_message_id,
            event.idempotency_key,
            event.channel,
            event.provider_status,
            event.occurred_at.isoformat() if event.occurred_at else "",
        ]
    )
    return hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest()


def apply_status_events(*, account_id: int, events: Iterable[StatusEvent], source: str) -> int:
    """Apply gateway status reports to deliveries: idempotent, monotonic, in bulk.

    Deliveries are found by the gateway's message id or by our idempotency key,
    only among the account's own deliveries. A report that would move a
    delivery backwards (a late 'sent' after 'delivered') is recorded as an
    event but does not change the status. Unknown ids are ignored. Returns the
    number of deliveries whose status changed. A constant number of queries,
    whatever the number of events.
    """
    events = [event for event in events if event.provider_message_id or event.idempotency_key]
    if not events:
        return 0
    provider_ids = {event.provider_message_id for event in events if event.provider_message_id}
    keys = {event.idempotency_key for event in events if event.idempotency_key}
    now = timezone.now()
    with transaction.atomic():
        deliveries = list(
            Delivery.objects.select_for_update()
            .filter(account_id=account_id)
            .filter(Q(provider_message_id__in=provider_ids) | Q(idempotency_key__in=keys))
            .order_by("pk")
        )
        by_provider_id = {d.provider_message_id: d for d in deliveries if d.provider_message_id}
        by_key = {d.idempotency_key: d for d in deliveries}
        changed: dict[int, Delivery] = {}
        new_events = []
        for event in events:
            delivery = by_provider_id.get(event.provider_message_id) or by_key.get(
                event.idempotency_key
            )
            if delivery is None:
                continue
            new_events.append(
                DeliveryEvent(
                    operator_id=delivery.operator_id,
                    delivery=delivery,
                    status=event.status,
                    provider_status=event.provider_status[:100],
                    source=source,
                    payload=event.raw,
                    dedupe_key=_event_key(source, event),
                    occurred_at=event.occurred_at,
                )
            )
            # A native cascade reports each channel; the step's own status follows
            # only reports about its own channel (the engine maps the others).
            if event.channel and event.channel != delivery.channel:
                continue
            if event.price is not None:
                delivery.price = event.price
                delivery.currency = event.currency or delivery.currency
                changed[delivery.pk] = delivery
            if event.parts:
                delivery.parts = event.parts
                changed[delivery.pk] = delivery
            if not can_move(delivery.status, event.status):
                continue
            delivery.status = event.status
            if event.status == DeliveryStatus.DELIVERED:
                delivery.delivered_at = event.occurred_at or now
            if event.status == DeliveryStatus.READ:
                delivery.read_at = event.occurred_at or now
                delivery.delivered_at = delivery.delivered_at or delivery.read_at
            if is_final(event.status) and delivery.final_at is None:
                delivery.final_at = now
            if event.error_message:
                delivery.error_message = event.error_message[:500]
            delivery.updated_at = now
            delivery._status_changed = True
            changed[delivery.pk] = delivery
        if changed:
            Delivery.objects.bulk_update(list(changed.values()), STATUS_FIELDS)
        if new_events:
            DeliveryEvent.objects.bulk_create(new_events, ignore_conflicts=True)
    return sum(1 for delivery in changed.values() if getattr(delivery, "_status_changed", False))
