"""Status reports from gateways (callbacks, polls) applied to deliveries, in bulk.

Reports are matched by the gateway's id or our idempotency key among the
account's own deliveries, applied monotonically and deduplicated, and written
through campaigns.outcomes like every other status change.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q

from campaigns import counters
from campaigns.cascade import native_leg
from campaigns.models import Campaign, Delivery
from campaigns.outcomes import Changes, commit_changes
from providers.base import StatusEvent


def _event_key(source: str, event: StatusEvent) -> str:
    # The same report received twice (a retried callback, an overlapping poll)
    # must not make a second event row.
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
    """Apply gateway reports: idempotent, monotonic, in bulk; returns deliveries whose status changed.

    Deliveries are found by the gateway's id or our idempotency key, only among
    the account's own. A report about another channel of a native cascade goes
    to that channel's step (created if the gateway got there first). Unknown
    ids are ignored. A constant number of queries, whatever the number of events.
    """
    events = [event for event in events if event.provider_message_id or event.idempotency_key]
    if not events:
        return 0
    provider_ids = {event.provider_message_id for event in events if event.provider_message_id}
    keys = {event.idempotency_key for event in events if event.idempotency_key}
    changes = Changes()
    with transaction.atomic():
        deliveries = list(
            Delivery.objects.select_for_update()
            .filter(account_id=account_id)
            .filter(Q(provider_message_id__in=provider_ids) | Q(idempotency_key__in=keys))
            .order_by("pk")
        )
        by_id: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            if delivery.provider_message_id:
                by_id[delivery.provider_message_id].append(delivery)
            by_id["key:" + delivery.idempotency_key].append(delivery)
        # Legs of native cascades that the gateway reports before we created them.
        legs_wanted: dict[tuple[int, str], Delivery] = {}
        # (event, its delivery, or the key of the native leg it belongs to)
        matched: list[tuple[StatusEvent, Delivery | None, tuple[int, str] | None]] = []
        for event in events:
            candidates = by_id.get(event.provider_message_id, []) or by_id.get(
                "key:" + event.idempotency_key, []
            )
            if not candidates:
                continue
            target = next(
                (d for d in candidates if d.channel == (event.channel or d.channel)), None
            )
            if target is None:
                parent = next(
                    (d for d in candidates if event.channel in (d.native_channels or [])), None
                )
                if parent is None:
                    # A channel we did not ask for: keep the report on the step.
                    changes.event(
                        candidates[0],
                        event.status,
                        source,
                        provider_status=event.provider_status,
                        payload=event.raw,
                        occurred_at=event.occurred_at,
                        dedupe_key=_event_key(source, event),
                    )
                    continue
                leg_key = (parent.message_id, event.channel)
                legs_wanted[leg_key] = parent
                matched.append((event, None, leg_key))
                continue
            matched.append((event, target, None))
        legs = _materialize_legs(legs_wanted)
        changed = 0
        for event, target, leg_key in matched:
            target = target or legs.get(leg_key)
            if target is None:
                continue
            changes.event(
                target,
                event.status,
                source,
                provider_status=event.provider_status,
                payload=event.raw,
                occurred_at=event.occurred_at,
                dedupe_key=_event_key(source, event),
            )
            changes.set_price(target, event.price, event.currency)
            if event.parts and event.parts != target.parts:
                changes.touch(target)
                target.parts = event.parts
            if changes.move(
                target, event.status, occurred_at=event.occurred_at, error=event.error_message
            ):
                changed += 1
        commit_changes(changes)
    return changed


def _materialize_legs(wanted: dict[tuple[int, str], Delivery]) -> dict[tuple[int, str], Delivery]:
    if not wanted:
        return {}
    message_ids = {message_id for message_id, _ in wanted}
    existing = {
        (d.message_id, d.channel): d
        for d in list(
            Delivery.objects.select_for_update().filter(message_id__in=message_ids).order_by("pk")
        )
    }
    missing = []
    campaigns = {
        c.pk: c
        for c in Campaign.objects.filter(
            pk__in={p.campaign_id for p in wanted.values() if p.campaign_id}
        )
    }
    for (message_id, channel), parent in wanted.items():
        if (message_id, channel) in existing:
            continue
        campaign = campaigns.get(parent.campaign_id)
        channels = list(campaign.channels) if campaign else []
        missing.append(native_leg(parent, channel, channels, parent.expires_at))
    if missing:
        Delivery.objects.bulk_create(missing, ignore_conflicts=True)
        deltas: Counter = Counter()
        for leg in missing:
            counters.transition(deltas, leg.campaign_id, leg.channel, None, leg.status)
        counters.bump(deltas)
        existing = {
            (d.message_id, d.channel): d
            for d in list(
                Delivery.objects.select_for_update()
                .filter(message_id__in=message_ids)
                .order_by("pk")
            )
        }
    return {key: existing[key] for key in wanted if key in existing}
