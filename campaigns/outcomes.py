"""Outcomes: what a submit, a report or the sweeper changes, written once per transaction.

Every writer of delivery statuses (dispatch results, callbacks, polls, the
sweeper, cancel) collects its changes in a `Changes` and ends in `commit_changes`,
which in a constant number of queries updates the rows, records events, moves
counters and costs, creates the next cascade steps and settles message statuses.
The submit outcomes (accepted, refused, failed: retry, wait or fail by
the backend's after_failure) are decided here too.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import counters, queue
from campaigns.bulk import bulk_update_deliveries, insert_events
from campaigns.cascade import advance_cascade
from campaigns.models import Delivery, DeliveryEvent, Message
from providers.base import ProviderError
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


# DeliveryStatus.values builds a new list of every choice on each call: in the loop over
# a claim's results that was a tenth of the write-back.
STATUS_VALUES = frozenset(DeliveryStatus.values)


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
        # Every status change goes through touch() first, so the status seen here is the
        # one the row had when it was read: what the counters move away from.
        self.old_status.setdefault(delivery.pk, delivery.status)
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


def commit_changes(changes: Changes) -> list[Delivery]:
    """Write everything collected; returns the new deliveries the cascade created."""
    rows = list(changes.rows.values())
    if rows:
        bulk_update_deliveries(rows, UPDATE_FIELDS)
    falling = [
        d
        for d in rows
        if d.status in FAILURE_STATUSES and changes.old_status[d.pk] not in FAILURE_STATUSES
    ]
    new_steps = advance_cascade(falling + changes.fall_through)
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


BACKOFF_BASE_SECONDS = 5


BACKOFF_CAP_SECONDS = 15 * 60


FAILOVER_AFTER_ATTEMPTS = 3  # transient failures in a row before trying the next account


# Most gateways settle within seconds; polling right after submit would only
# learn "in progress" and then wait out the once-a-minute rule.
FIRST_POLL_SECONDS = 5


def backoff(attempts: int) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's 'full jitter')."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


# What a gateway report may have written while the batch was on the wire.
REPORTED_FIELDS = (
    "status",
    "price",
    "currency",
    "parts",
    "error_message",
    "delivered_at",
    "read_at",
    "final_at",
)


def submit_failed(
    changes: Changes,
    delivery: Delivery,
    *,
    permanent: bool,
    may_have_reached: bool,
    backend,
    error: str,
    code: str,
    routes,
    final: str = DeliveryStatus.FAILED,
) -> None:
    """One failed submit of a delivery we hold, decided by backend.after_failure."""
    delivery.error_code = code[:50]
    decision = backend.after_failure(permanent=permanent, may_have_reached=may_have_reached)
    if decision == "fail":
        changes.move(delivery, final, error=error, force=True)
    elif decision == "wait":
        wait_for_report(changes, delivery, error)
    else:
        if may_have_reached:
            # Harmless to resend under the same key to the same gateway only.
            delivery.may_be_at_gateway = True
        retry_later(changes, delivery, error, routes)


def wait_for_report(changes: Changes, delivery: Delivery, error: str) -> None:
    """The gateway may have the message and cannot tell a resend from a new one: ask it
    (poll or callback) and let the TTL expire the step if it never says."""
    changes.move(
        delivery,
        DeliveryStatus.UNKNOWN,
        error=(
            f"{error} - the gateway may have taken the message and has no idempotency key, "
            "so it is not resent; waiting for the gateway's report until the TTL."
        ),
        force=True,
    )
    delivery.lease_expires_at = None
    delivery.next_attempt_at = changes.now + timedelta(seconds=FIRST_POLL_SECONDS)


@dataclass
class Hold:
    """Which claimed rows are still ours to write when a submit's outcome comes back."""

    ours: set[int] = field(default_factory=set)  # submitting under our claim
    # Submitting under another worker's claim: our lease ran out and the sweeper gave
    # the row to someone else, whose outcome stands.
    others: set[int] = field(default_factory=set)


def request_failed(
    changes: Changes,
    chunk: list[Delivery],
    error: ProviderError,
    routes,
    hold: Hold,
    *,
    backend,
) -> None:
    for delivery in chunk:
        if delivery.pk not in hold.ours:
            continue  # no longer ours to change
        submit_failed(
            changes,
            delivery,
            permanent=error.permanent,
            may_have_reached=error.may_have_reached,
            backend=backend,
            error=str(error),
            code=error.code,
            routes=routes,
        )
        changes.event(
            delivery,
            delivery.status,
            "submit",
            provider_status=error.code,
            payload=error.response_text[:2000],
        )


def record_results(
    changes: Changes, chunk: list[Delivery], results, routes, hold: Hold, *, backend
) -> None:
    by_id = {delivery.pk: delivery for delivery in chunk}
    now = changes.now
    for result in results:
        delivery = by_id.get(result.delivery_id)
        if delivery is None:
            continue
        if delivery.pk in hold.others:
            # Our lease ran out and another worker holds the row now: its outcome stands;
            # what the gateway told us is kept as an event.
            submit_event(changes, delivery, result)
            continue
        ours = delivery.pk in hold.ours
        changes.touch(delivery)
        delivery.lease_expires_at = None
        if result.accepted:
            # The gateway's message id is what status queries and callbacks use;
            # per-channel ids of a native cascade stay in the submit event's payload.
            delivery.provider_message_id = result.provider_message_id[:100]
            delivery.submitted_at = now
            delivery.next_attempt_at = now + timedelta(seconds=FIRST_POLL_SECONDS)
            delivery.parts = result.parts or delivery.parts
            changes.set_price(delivery, result.price, result.currency)
            status = result.status if result.status in STATUS_VALUES else DeliveryStatus.SENT
            # Forced only out of our own claim; a report that came first stands.
            changes.move(delivery, DeliveryStatus.SENT, force=ours)
            if status != DeliveryStatus.SENT:
                changes.move(delivery, status)
        elif not ours:
            pass  # a report or the sweeper already moved it on
        else:
            final = (
                result.status
                if result.status
                in (DeliveryStatus.REJECTED, DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERABLE)
                else DeliveryStatus.FAILED
            )
            submit_failed(
                changes,
                delivery,
                permanent=result.permanent,
                may_have_reached=result.may_have_reached,
                backend=backend,
                error=result.error_message,
                code=result.error_code,
                routes=routes,
                final=final,
            )
        submit_event(changes, delivery, result)


def submit_event(changes: Changes, delivery: Delivery, result) -> None:
    """What the gateway answered for one delivery, kept whoever holds the row now."""
    changes.event(
        delivery,
        delivery.status,
        "submit",
        provider_status=result.error_code or "accepted",
        payload=result.raw[:4000],
    )


def wait_until(changes: Changes, delivery: Delivery, when, reason: str) -> None:
    """Back to the queue untried until `when` (a send window, a frequency cap's next slot).

    Not a failed attempt: the claim's count is given back, so backoff and failover
    are not moved by waiting.
    """
    changes.touch(delivery)
    delivery.status = DeliveryStatus.QUEUED
    delivery.lease_expires_at = None
    delivery.next_attempt_at = when
    delivery.attempts = max(delivery.attempts - 1, 0)
    delivery.error_message = reason[:500]


def retry_later(changes: Changes, delivery: Delivery, error: str, routes) -> None:
    """Back to the queue with backoff, on the next account after repeated failures, or expired.

    A delivery that may be at its gateway already stays on that account: another
    gateway would not know its idempotency key and would send it a second time.
    """
    changes.touch(delivery)
    delivery.lease_expires_at = None
    delivery.error_message = error[:500]
    delay = backoff(delivery.attempts)
    if delivery.expires_at and changes.now + timedelta(seconds=delay) > delivery.expires_at:
        changes.move(
            delivery,
            DeliveryStatus.EXPIRED,
            error=f"TTL passed while retrying: {error}",
            force=True,
        )
        return
    route = routes.get(delivery.channel)
    if (
        route
        and not delivery.may_be_at_gateway
        and delivery.attempts >= FAILOVER_AFTER_ATTEMPTS
        and len(route.account_ids) > 1
    ):
        accounts = list(route.account_ids)
        current = accounts.index(delivery.account_id) if delivery.account_id in accounts else -1
        delivery.account_id = accounts[(current + 1) % len(accounts)]
        delivery.attempts = 0
        delay = 0
    delivery.status = DeliveryStatus.QUEUED
    delivery.next_attempt_at = changes.now + timedelta(seconds=delay)
