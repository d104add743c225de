"""Status changes of deliveries and what follows from them: counters, messages, the cascade.

Every writer of delivery statuses (dispatch results, callbacks, polls, the
sweeper, cancel) ends in `commit_changes`, which in a constant number of
queries updates the rows, records events, moves counters and costs, creates
the next cascade steps and settles message statuses.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import partial

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import counters, queue
from campaigns.eligibility import skip_reason
from campaigns.fanout import delivery_key
from campaigns.models import Campaign, Delivery, DeliveryEvent, Message
from campaigns.routing import routes_for
from providers.base import StatusEvent
from providers.status import FAILURE_STATUSES, DeliveryStatus, can_move, is_final

UPDATE_FIELDS = [
    "status",
    "account",
    "provider_message_id",
    "price",
    "currency",
    "parts",
    "error_code",
    "error_message",
    "attempts",
    "next_attempt_at",
    "lease_expires_at",
    "submitted_at",
    "delivered_at",
    "read_at",
    "final_at",
    "native_channels",
    "may_be_at_gateway",
    "updated_at",
]


@dataclass
class Changes:
    """What one transaction changes, collected before it is written in bulk."""

    now: object = field(default_factory=timezone.now)
    rows: dict[int, Delivery] = field(default_factory=dict)
    old_status: dict[int, str] = field(default_factory=dict)
    events: list[DeliveryEvent] = field(default_factory=list)
    costs: dict[tuple, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fall_through: list[Delivery] = field(default_factory=list)  # delivered-unread past TTL

    def touch(self, delivery: Delivery) -> None:
        if delivery.pk not in self.old_status:
            self.old_status[delivery.pk] = getattr(delivery, "_loaded_status", delivery.status)
        delivery.updated_at = self.now
        self.rows[delivery.pk] = delivery

    def move(
        self, delivery: Delivery, status: str, *, occurred_at=None, error: str = "", force=False
    ) -> bool:
        if not force and not can_move(delivery.status, status):
            return False
        self.touch(delivery)
        delivery.status = status
        when = occurred_at or self.now
        if status == DeliveryStatus.DELIVERED:
            delivery.delivered_at = when
        if status == DeliveryStatus.READ:
            delivery.read_at = when
            delivery.delivered_at = delivery.delivered_at or when
        if is_final(status):
            delivery.final_at = delivery.final_at or self.now
            delivery.lease_expires_at = None
            delivery.next_attempt_at = None
        if error:
            delivery.error_message = error[:500]
        return True

    def set_price(self, delivery: Delivery, price: Decimal | None, currency: str) -> None:
        if price is None or price == delivery.price:
            return
        self.touch(delivery)
        previous = delivery.price or Decimal(0)
        delivery.price = price
        delivery.currency = currency or delivery.currency
        if delivery.campaign_id:
            self.costs[(delivery.campaign_id, delivery.channel, delivery.currency)] += (
                price - previous
            )

    def event(
        self,
        delivery: Delivery,
        status: str,
        source: str,
        *,
        provider_status="",
        payload="",
        occurred_at=None,
        dedupe_key: str = "",
    ) -> None:
        self.events.append(
            DeliveryEvent(
                operator_id=delivery.operator_id,
                delivery_id=delivery.pk,
                status=status,
                provider_status=str(provider_status)[:100],
                source=source,
                payload=payload or "",
                occurred_at=occurred_at,
                dedupe_key=dedupe_key,
            )
        )


def _copy_to_temp(cursor, fields, rows: list, with_id: bool) -> str:
    """Stream rows into a per-connection temporary table with COPY; returns its name.

    psycopg adapts str, int, Decimal and aware datetimes itself in C; only JSON
    needs Django's preparation. Thousands of query parameters, or Django's
    bulk_update (a CASE WHEN per row and field), cost far more than the SQL.
    """
    model = fields[0].model
    names = ",".join(field.column for field in fields)
    table = (
        "_copy_"
        + hashlib.sha1(
            f"{model._meta.db_table}:{names}:{with_id}".encode(), usedforsecurity=False
        ).hexdigest()[:12]
    )
    preparers = [
        (field.attname, partial(field.get_db_prep_save, connection=connection))
        if field.get_internal_type() == "JSONField"
        else (field.attname, _as_is)
        for field in fields
    ]
    definitions = ", ".join(f"{field.column} {field.db_type(connection)}" for field in fields)
    id_column = "id bigint, " if with_id else ""
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {table} ({id_column}{definitions}) ON COMMIT DELETE ROWS"
    )
    id_name = "id, " if with_id else ""
    with cursor.cursor.copy(
        f"COPY {table} ({id_name}{names.replace(',', ', ')}) FROM STDIN"
    ) as copy:
        for row in rows:
            values = [prepare(getattr(row, attname)) for attname, prepare in preparers]
            copy.write_row([row.pk, *values] if with_id else values)
    return table


def bulk_update_deliveries(rows: list[Delivery], field_names: list[str]) -> None:
    """COPY the new values into a temporary table, then one UPDATE … FROM it (PostgreSQL)."""
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_update(rows, field_names)
        return
    fields = [Delivery._meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{field.column} = v.{field.column}" for field in fields)
    with connection.cursor() as cursor:
        table = _copy_to_temp(cursor, fields, rows, with_id=True)
        cursor.execute(
            f"UPDATE campaigns_delivery AS d SET {assignments} FROM {table} AS v "  # noqa: S608 - our own names
            "WHERE d.id = v.id"
        )
        cursor.execute(f"TRUNCATE {table}")


def insert_events(events: list[DeliveryEvent]) -> None:
    """Insert events, skipping reports already recorded (dedupe key); COPY on PostgreSQL."""
    if connection.vendor != "postgresql":
        DeliveryEvent.objects.bulk_create(events, ignore_conflicts=True)
        return
    now = timezone.now()
    for event in events:
        event.received_at = event.received_at or now
    fields = [f for f in DeliveryEvent._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(field.column for field in fields)
    with connection.cursor() as cursor:
        table = _copy_to_temp(cursor, fields, events, with_id=False)
        cursor.execute(
            f"INSERT INTO campaigns_deliveryevent ({columns}) SELECT {columns} FROM {table} "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )
        cursor.execute(f"TRUNCATE {table}")


def _as_is(value):
    return value


def load(queryset) -> list[Delivery]:
    rows = list(queryset)
    for row in rows:
        row._loaded_status = row.status
    return rows


def commit_changes(changes: Changes) -> list[Delivery]:
    """Write everything collected; returns the new deliveries the cascade created."""
    rows = list(changes.rows.values())
    if rows:
        bulk_update_deliveries(rows, UPDATE_FIELDS)
    new_steps = advance_cascade(changes)
    deltas: Counter = Counter()
    for delivery in rows:
        counters.transition(
            deltas,
            delivery.campaign_id,
            delivery.channel,
            changes.old_status[delivery.pk],
            delivery.status,
        )
    for delivery in new_steps:
        counters.transition(deltas, delivery.campaign_id, delivery.channel, None, delivery.status)
    counters.bump(deltas)
    counters.add_costs(changes.costs)
    if changes.events:
        insert_events(changes.events)
    settle_messages(rows, new_steps, changes.now)
    queued_accounts = {
        d.account_id for d in new_steps if d.status == DeliveryStatus.QUEUED and d.account_id
    }
    if queued_accounts:
        transaction.on_commit(lambda: queue.kick_accounts(queued_accounts))
    return new_steps


def native_leg(parent: Delivery, channel: str, channels: list[str], expires_at) -> Delivery:
    """The step of a channel that a gateway runs itself after `parent` (native cascade)."""
    position = parent.native_channels.index(channel)
    step = channels.index(channel) if channel in channels else parent.step + 1 + position
    return Delivery(
        operator_id=parent.operator_id,
        message_id=parent.message_id,
        campaign_id=parent.campaign_id,
        step=step,
        channel=channel,
        account_id=parent.account_id,
        status=DeliveryStatus.SENT,
        idempotency_key=delivery_key(parent.message_id, step),
        provider_message_id=parent.provider_message_id,
        native_channels=parent.native_channels[position + 1 :],
        submitted_at=parent.submitted_at,
        expires_at=expires_at,
    )


def _next_step(
    delivery: Delivery, campaign: Campaign | None, *, routes, client, message
) -> Delivery | None:
    if campaign is None:
        return None  # a one-off partner message has one channel
    channels = list(campaign.channels)
    if delivery.native_channels:
        # The gateway runs the rest natively: its next leg takes over, reported by the gateway.
        expires_at = timezone.now() + timedelta(minutes=campaign.ttl_minutes)
        return native_leg(delivery, delivery.native_channels[0], channels, expires_at)
    for step in range(delivery.step + 1, len(channels)):
        channel = channels[step]
        code, _text = skip_reason(
            channel=channel,
            purpose=campaign.purpose,
            client=client,
            phone=message.phone,
            email=message.email,
            routes=routes,
        )
        if code:
            continue
        return Delivery(
            operator_id=delivery.operator_id,
            message_id=delivery.message_id,
            campaign_id=delivery.campaign_id,
            step=step,
            channel=channel,
            account_id=routes[channel].primary,
            status=DeliveryStatus.QUEUED,
            idempotency_key=delivery_key(delivery.message_id, step),
            next_attempt_at=timezone.now(),  # claims look for due rows only
            expires_at=timezone.now() + timedelta(minutes=campaign.ttl_minutes),
        )
    return None


def advance_cascade(changes: Changes) -> list[Delivery]:
    """Next steps for deliveries that failed (or were delivered but unread when read is final)."""
    falling = [
        d
        for d in changes.rows.values()
        if d.status in FAILURE_STATUSES and changes.old_status[d.pk] not in FAILURE_STATUSES
    ]
    falling += changes.fall_through
    if not falling:
        return []
    messages = {
        m.pk: m
        for m in Message.objects.filter(pk__in={d.message_id for d in falling}).select_related(
            "client", "campaign"
        )
    }
    routes_by_operator: dict[int, dict] = {}
    new_steps = []
    for delivery in falling:
        message = messages.get(delivery.message_id)
        if message is None or message.campaign is None:
            continue
        campaign = message.campaign
        if campaign.state == Campaign.State.CANCELLED:
            continue
        if delivery.operator_id not in routes_by_operator:
            routes_by_operator[delivery.operator_id] = routes_for(delivery.operator_id)
        step = _next_step(
            delivery,
            campaign,
            routes=routes_by_operator[delivery.operator_id],
            client=message.client,
            message=message,
        )
        if step is not None:
            new_steps.append(step)
    if new_steps:
        # A step may exist already (a native leg the gateway reported first, a
        # re-run): only the missing ones are created and counted.
        present = set(
            Delivery.objects.filter(
                idempotency_key__in=[d.idempotency_key for d in new_steps]
            ).values_list("idempotency_key", flat=True)
        )
        new_steps = [d for d in new_steps if d.idempotency_key not in present]
        Delivery.objects.bulk_create(new_steps, ignore_conflicts=True)
        # ignore_conflicts gives no ids: read back the rows just made.
        new_steps = load(
            Delivery.objects.filter(idempotency_key__in=[d.idempotency_key for d in new_steps])
        )
    return new_steps


OPEN_STATUSES = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SUBMITTING,
    DeliveryStatus.SENT,
    DeliveryStatus.PENDING,
    DeliveryStatus.UNKNOWN,
)
REACHED_STATUSES = (DeliveryStatus.DELIVERED, DeliveryStatus.READ)


def settle_messages(rows: list[Delivery], new_steps: list[Delivery], now) -> None:
    """Message status follows its deliveries: read > delivered > failed/cancelled > in progress."""
    continuing = {d.message_id for d in new_steps}
    read = {d.message_id for d in rows if d.status == DeliveryStatus.READ}
    delivered = {d.message_id for d in rows if d.status == DeliveryStatus.DELIVERED} - read
    failed = {
        d.message_id for d in rows if d.status in FAILURE_STATUSES and not d.native_channels
    } - continuing
    cancelled = {d.message_id for d in rows if d.status == DeliveryStatus.CANCELLED}
    # Skipped at send time (consent withdrawn while queued) with no channel left to try.
    skipped = {d.message_id for d in rows if d.status == DeliveryStatus.SKIPPED} - continuing
    if read:
        Message.objects.filter(pk__in=read).exclude(status=Message.Status.READ).update(
            status=Message.Status.READ, updated_at=now
        )
    if delivered:
        Message.objects.filter(pk__in=delivered).exclude(
            status__in=[Message.Status.READ, Message.Status.DELIVERED]
        ).update(status=Message.Status.DELIVERED, updated_at=now)
    open_statuses = [Message.Status.PENDING, Message.Status.IN_PROGRESS]
    if failed:
        # Only when no other step of the message is still under way (a native leg may be).
        Message.objects.filter(pk__in=failed, status__in=open_statuses).exclude(
            deliveries__status__in=OPEN_STATUSES
        ).update(status=Message.Status.FAILED, updated_at=now)
    if cancelled:
        Message.objects.filter(pk__in=cancelled, status__in=open_statuses).update(
            status=Message.Status.CANCELLED, updated_at=now
        )
    if skipped:
        # Failed if an earlier step was tried and failed, skipped if none ever went out.
        undecided = Message.objects.filter(pk__in=skipped, status__in=open_statuses).exclude(
            deliveries__status__in=[*OPEN_STATUSES, *REACHED_STATUSES]
        )
        tried = Q(deliveries__status__in=FAILURE_STATUSES)
        undecided.filter(tried).update(status=Message.Status.FAILED, updated_at=now)
        undecided.exclude(tried).update(status=Message.Status.SKIPPED, updated_at=now)


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
        deliveries = load(
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
        for d in load(
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
            for d in load(
                Delivery.objects.select_for_update()
                .filter(message_id__in=message_ids)
                .order_by("pk")
            )
        }
    return {key: existing[key] for key in wanted if key in existing}
